/// <reference lib="dom" />
// The page <-> worker contract. The worker holds the examples and the model and does the
// computing; the page holds the connection (so that a long GPU step in the worker never starves
// the socket's heartbeats) and only ever receives weights, counts and metrics, never the data.

import type {
  EvaluateOutcome,
  EvaluateRequest,
  TrainerProgress,
  TrainOutcome,
  TrainRequest,
} from '@tessera/client/core';
import type { TabularStatistics } from '@tessera/data';
import type {
  Ack,
  SecAggClientFrame,
  SecAggServerFrame,
  SecAggSetupMessage,
} from '@tessera/protocol';
import type { TaskDefinition } from '@tessera/tasks';
import type { BrowserBackendName, ProbeResult } from './probe.js';

export type BackendPreference = 'auto' | 'webgpu' | 'webgl' | 'wasm';
export const BACKEND_PREFERENCES: readonly BackendPreference[] = [
  'auto',
  'webgpu',
  'webgl',
  'wasm',
];

/** A picked image and the class it was filed under (its sub-folder). */
export interface LabelledFile {
  file: File;
  className: string;
  /** Its path in the picked folder (digits/3/scan-1.png), for messages. */
  path?: string;
}

export type DataChoice =
  | { kind: 'sample'; count: number }
  | { kind: 'images'; files: LabelledFile[] }
  | { kind: 'csv'; file: File; featureScale: number }
  /** Any task's data (not MNIST's): read per task the coordinator sends, in the worker. */
  | { kind: 'task-file'; file: File }
  /** Any image task's class folders (any size: resized per task), read per task in the worker. */
  | { kind: 'task-images'; files: LabelledFile[] };

export type PageToWorker =
  | {
      type: 'load';
      backend: BackendPreference;
      data: DataChoice;
      /** Fraction of the local examples kept for federated evaluation. */
      holdoutFraction: number;
      /** Where the page was served from, to find the bundled assets (sample, .wasm files). */
      assetBase: string;
      /**
       * A task definition (the JSON an admin gives out) to check the data against before
       * joining: the worker reads the data as a round would and refuses to load on a mismatch.
       */
      checkTask?: File;
    }
  /**
   * A probe worker's only job: start `backend`, time a few training steps of `model` on random
   * data of its input shape, answer 'probed'. The page terminates it after (or at its time cap).
   */
  | { type: 'probe'; backend: BrowserBackendName; model: string; batchSize: number; steps: number }
  /** Train on this backend from the next computation on (after a probe, or the user's switch). */
  | { type: 'use-backend'; id: number; backend: BrowserBackendName }
  | { type: 'train'; id: number; request: TrainRequest }
  | { type: 'evaluate'; id: number; request: EvaluateRequest }
  /** The federated statistics round: the worker summarises its rows for the task (no row leaves). */
  | { type: 'statistics'; id: number; task: TaskDefinition }
  | SecAggToWorker;

/**
 * A secure-aggregation round's part runs in the worker (secagg-in-worker.ts, opened from the page
 * by worker-secagg.ts): the page relays the coordinator's frames in and the worker's frames out
 * through its socket. `session` is the number of the call that opened the round's part, so a
 * message of an abandoned round never reaches the next. Each call is answered by `secagg-done`
 * or `secagg-failed` with its `call` number (not `id`: these run beside the training calls, not
 * in their queue).
 */
export type SecAggToWorker =
  | {
      type: 'secagg-open';
      call: number;
      runId: string;
      round: number;
      setup: SecAggSetupMessage;
      clientId: string;
    }
  | { type: 'secagg-advertise'; session: number; call: number }
  | { type: 'secagg-frame'; session: number; call: number; frame: SecAggServerFrame }
  | {
      type: 'secagg-provide';
      session: number;
      global: Float32Array;
      trained: Float32Array;
      numExamples: number;
    }
  | { type: 'secagg-abandon'; session: number; reason: string }
  /** The coordinator's ack of a frame the worker asked the page to send. */
  | { type: 'secagg-sent'; send: number; ack: Ack };

export type SecAggToPage =
  | { type: 'secagg-done'; call: number }
  | { type: 'secagg-failed'; call: number; code: string; message: string }
  /** A frame for the coordinator; the page answers `secagg-sent` with its ack. */
  | { type: 'secagg-send'; session: number; send: number; frame: SecAggClientFrame }
  /**
   * The masked input's ack, or the failure that kept it from being sent. `afterTrainingMs`: from
   * the trained weights reaching the worker to the ack (masking, sending, the coordinator's check).
   */
  | { type: 'secagg-masked'; session: number; ack: Ack; afterTrainingMs: number }
  | { type: 'secagg-mask-failed'; session: number; code: string; message: string };

export type WorkerToPage =
  | { type: 'backend'; name: string; detail: string; fallbacks: string[] }
  | { type: 'backend-set'; id: number; name: BrowserBackendName; detail: string }
  | { type: 'probed'; result: ProbeResult }
  | {
      type: 'loaded';
      description: string;
      train: number;
      holdout: number;
      classes: string[];
      /** The check against `checkTask`, when one was asked for: plain lines, counts only. */
      check?: string[];
    }
  | { type: 'load-failed'; code: string; message: string; check?: string[] }
  | { type: 'progress'; id: number; progress: TrainerProgress }
  | { type: 'trained'; id: number; outcome: TrainOutcome }
  | { type: 'evaluated'; id: number; outcome: EvaluateOutcome }
  | { type: 'summarised'; id: number; statistics: TabularStatistics }
  /** `code`: a RoundFailure's (DATA_SCHEMA_MISMATCH...), passed on to the coordinator. */
  | { type: 'failed'; id: number; message: string; code?: string }
  | SecAggToPage;

export interface RoundOutcome {
  round: number;
  /** 'sent': the update was accepted; 'refused'/'closed': it was not used. */
  outcome: 'sent' | 'refused' | 'closed';
  detail: string;
  loss: number | null;
  accuracy: number | null;
  numExamples: number;
  durationMs: number;
  samplesPerSecond: number;
}

/** What the page shows: from the worker (backend, data) and from the client (the rest). */
export type ViewEvent =
  | { type: 'backend'; name: string; detail: string; fallbacks: string[] }
  | { type: 'probing'; model: string }
  /** The backend chosen by measurement (or by the user), with the figures behind the choice. */
  | { type: 'backend-chosen'; name: string; detail: string; why: string }
  | { type: 'run-idle'; seconds: number }
  /** Where SCAFFOLD's c_i is kept; `fallback`: why not in IndexedDB (then memory only). */
  | { type: 'control-variates'; where: string; fallback: string | null }
  | {
      type: 'data';
      description: string;
      train: number;
      holdout: number;
      classes: string[];
      check?: string[];
    }
  | { type: 'connected'; organisation: string; clientId: string; federationId: string }
  | { type: 'disconnected'; reason: string }
  | { type: 'round-started'; round: number; model: string; epochs: number; batchSize: number }
  | {
      type: 'progress';
      round: number;
      epoch: number;
      epochs: number;
      batch: number;
      batches: number;
      loss: number | null;
    }
  | ({ type: 'round-finished' } & RoundOutcome)
  /** Local training failed; the coordinator was sent the same reason. */
  | { type: 'round-failed'; round: number; reason: string }
  | { type: 'evaluated'; round: number; accuracy: number; loss: number; numExamples: number }
  | { type: 'warning'; message: string }
  | { type: 'replaced'; message: string }
  | { type: 'fatal'; code: string; message: string; check?: string[] };
