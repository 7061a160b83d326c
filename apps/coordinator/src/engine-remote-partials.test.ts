import { createHash } from 'node:crypto';
import { FedAvg, PartialRound } from '@tessera/aggregation';
import type { Database, RunConfigInput } from '@tessera/db';
import { ErrorCode, TesseraError, weightsToBytes } from '@tessera/protocol';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CollectedPartial, RemoteUpdateClaim } from './cluster/remote-fold.js';
import type { RemotePartials, RunEngine } from './engine.js';
import {
  type Behaviour,
  connect,
  createFederation,
  PARAMS,
  startEngine,
  useTestDatabase,
} from './testing/engine-harness.js';

/**
 * The engine's side of aggregation where the updates arrive, over the in-memory transport and
 * a real PGlite database: clients 1 and 2 of three answer through "another process" (the
 * test's own PartialRound, folded only on the engine's yes, as cluster/remote-fold.ts does),
 * client 0 straight to the engine. The engine's RemotePartials hands it that process's partial,
 * or none (the process died).
 */

const testDatabase = useTestDatabase('engine-remote-partials');
let db: Database;
let federations = 0;
beforeAll(() => {
  db = testDatabase.db;
});

const OTHER = 'process-b';
const exact: Partial<RunConfigInput> = {
  strategyOptions: { arithmetic: 'exact' },
  keepUpdates: false,
  minClients: 1,
};

/** Client k's weights in round r: a spread of magnitudes, so the order would matter in float64. */
function weightsOf(k: number, round: number): Float32Array {
  return Float32Array.from(
    { length: PARAMS },
    (_, i) => Math.sin(i * (k + 1) + round) * 10 ** ((i % 9) - 4),
  );
}

/** The other process: its partials by attempt key, and the verdicts it got. */
class OtherProcess implements RemotePartials {
  readonly partials = new Map<string, { round: PartialRound; clientIds: string[] }>();
  readonly verdicts: string[] = [];
  /** False: it "died", and its partials never come. */
  alive = true;

  behaviour(k: number): Behaviour {
    return (message, ctx) => {
      if (message.event !== 'train') return;
      const { runId, round } = message.payload;
      this.send(ctx.engine, runId, round, ctx.clientId, k);
    };
  }

  /** What remote-fold.ts does on arrival: claim, fold on yes only. */
  send(engine: RunEngine, runId: string, round: number, clientId: string, k: number): string {
    const weights = weightsOf(k, round);
    const claim: RemoteUpdateClaim = {
      runId,
      round,
      clientId,
      numExamples: 10 * (k + 1),
      durationMs: 4,
      sizeBytes: weights.byteLength,
      sha256: createHash('sha256').update(weightsToBytes(weights)).digest('hex'),
      numParameters: weights.length,
      metrics: { loss: k },
    };
    try {
      const verdict = engine.acceptRemoteUpdate(OTHER, claim);
      if (!verdict.fold) {
        this.verdicts.push('forward');
        return 'forward';
      }
      let open = this.partials.get(verdict.key);
      if (!open) {
        open = { round: new PartialRound(PARAMS), clientIds: [] };
        this.partials.set(verdict.key, open);
      }
      open.round.add({ clientId, numExamples: claim.numExamples, weights, metrics: claim.metrics });
      open.clientIds.push(clientId);
      this.verdicts.push('fold');
      return 'fold';
    } catch (error) {
      const code = (error as TesseraError).code;
      this.verdicts.push(code);
      return code;
    }
  }

  async collect(_runId: string, key: string, processIds: readonly string[]) {
    const answers = new Map<string, CollectedPartial | null | TesseraError>();
    for (const processId of processIds) {
      const open = this.partials.get(key);
      this.partials.delete(key);
      answers.set(
        processId,
        !this.alive
          ? new TesseraError(ErrorCode.UNAVAILABLE, `coordinator ${processId} is gone`)
          : open === undefined
            ? null
            : { clientIds: open.clientIds, ...open.round.toPartial() },
      );
    }
    return answers;
  }
}

async function federation(count: number) {
  const fed = await createFederation(db, count, { name: `remote partials ${++federations}` });
  // No held-out data: no federated evaluation, the rounds are about training.
  for (const clientId of fed.clientIds) connect(fed, clientId, 0);
  return fed;
}

/** Client 0 answers the engine directly with weightsOf(0, round). */
const direct: Behaviour = (message, ctx) => {
  if (message.event !== 'train') return;
  ctx.update({
    weights: new Uint8Array(weightsToBytes(weightsOf(0, message.payload.round))),
    numExamples: 10,
  });
};

/** A checkpoint's sha256 (compared as text: a failing diff of 800 KB buffers takes minutes). */
const checkpointOf = async (runId: string, round: number) =>
  sha256((await db.rounds.checkpoint(runId, round)).weights);
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

function exactMean(ks: readonly number[], round: number): Float32Array {
  const r = new FedAvg({ arithmetic: 'exact' }).beginRound(round, new Float32Array(PARAMS));
  for (const k of ks)
    r.add({
      clientId: `${k}`,
      numExamples: 10 * (k + 1),
      weights: weightsOf(k, round),
      metrics: {},
    });
  return r.finish().weights as Float32Array;
}

describe('RunEngine with updates folded by another process', () => {
  it('merges the other process’s partial: the checkpoint is the exact FedAvg of all three, bytes equal', async () => {
    const fed = await federation(3);
    const other = new OtherProcess();
    const s = await startEngine(db, fed, {
      config: { ...exact, rounds: 2 },
      behaviours: { 0: direct, 1: other.behaviour(1), 2: other.behaviour(2) },
      remotePartials: other,
    });
    await s.done;
    expect(s.finished).toEqual([{ status: 'completed' }]);
    expect(other.verdicts).toEqual(['fold', 'fold', 'fold', 'fold']);
    for (const round of [1, 2]) {
      expect(await checkpointOf(s.run.id, round)).toBe(
        sha256(weightsToBytes(exactMean([0, 1, 2], round))),
      );
      const record = await db.rounds.get(s.run.id, round);
      expect(new Set(record.participantClientIds)).toEqual(new Set(fed.clientIds));
      expect(record.numExamples).toBe(60);
      // The example-weighted metric mean over all three (1, 1 and 2 by 10, 20 and 30 examples).
      expect(record.trainLoss).toBeCloseTo((1 * 10 + 1 * 20 + 2 * 30) / 60, 12);
      const updates = await db.rounds.updates(s.run.id, round);
      expect(updates.map((u) => u.arrivalIndex).sort()).toEqual([0, 1, 2]);
    }
  });

  it('refuses a duplicate and a client not in the round with their codes; a float64 run says forward', async () => {
    const fed = await federation(2);
    const other = new OtherProcess();
    // Whichever client is sampled answers twice, and claims for the one that was not.
    const twiceAndOutsider: Behaviour = (message, ctx) => {
      if (message.event !== 'train') return;
      const { runId } = message.payload;
      const outsider = fed.clientIds.find((id) => id !== ctx.clientId) as string;
      other.send(ctx.engine, runId, 1, ctx.clientId, 0);
      other.send(ctx.engine, runId, 1, ctx.clientId, 0);
      other.send(ctx.engine, runId, 1, outsider, 1);
    };
    const s = await startEngine(db, fed, {
      config: { ...exact, clientsPerRound: 1 },
      behaviours: { 0: twiceAndOutsider, 1: twiceAndOutsider },
      remotePartials: other,
    });
    await s.done;
    expect(other.verdicts).toEqual(['fold', ErrorCode.DUPLICATE_UPDATE, ErrorCode.NOT_SELECTED]);

    const float64 = new OtherProcess();
    const legacy = await startEngine(db, fed, {
      // Recorded without `arithmetic`: float64 in arrival order, folded in one place only.
      config: { ...exact, strategyOptions: {}, roundDeadlineMs: 1_000 },
      behaviours: { 0: float64.behaviour(0), 1: float64.behaviour(1) },
      remotePartials: float64,
      maxRoundAttempts: 1,
    });
    await legacy.done;
    expect(float64.verdicts).toEqual(['forward', 'forward']);
  });

  it('a lost partial: its clients are recorded dropped with the reason, the round commits from the rest', async () => {
    const fed = await federation(3);
    const other = new OtherProcess();
    const s = await startEngine(db, fed, {
      config: exact,
      logLevel: 'warn',
      behaviours: {
        0: (message, ctx) => {
          // Answers last, once the other process's clients were accepted and it "died".
          if (message.event !== 'train') return;
          setTimeout(() => {
            other.alive = false;
            direct(message, ctx);
          }, 100);
        },
        1: other.behaviour(1),
        2: other.behaviour(2),
      },
      remotePartials: other,
    });
    await s.done;
    const record = await db.rounds.get(s.run.id, 1);
    const [first, ...remote] = fed.clientIds as [string, ...string[]];
    expect(record.participantClientIds).toEqual([first]);
    expect(new Set(record.droppedClientIds)).toEqual(new Set(remote));
    for (const clientId of remote) {
      const outcome = record.outcomes.find((o) => o.clientId === clientId);
      expect(outcome).toMatchObject({ outcome: 'dropped', code: ErrorCode.UNAVAILABLE });
      expect(outcome?.reason).toMatch(/partial aggregate lost: coordinator process-b is gone/);
    }
    expect(record.numExamples).toBe(10);
    expect((await db.rounds.updates(s.run.id, 1)).map((u) => [u.clientId, u.arrivalIndex])).toEqual(
      [[first, 0]],
    );
    expect(await checkpointOf(s.run.id, 1)).toBe(sha256(weightsToBytes(exactMean([0], 1))));
    expect(fed.logs.some((l) => l.includes('updates folded by another coordinator lost'))).toBe(
      true,
    );
  });

  it('a lost partial that leaves fewer than minClients updates retries the round', async () => {
    const fed = await federation(3);
    const other = new OtherProcess();
    let attempts = 0;
    const s = await startEngine(db, fed, {
      config: { ...exact, minClients: 2 },
      behaviours: {
        0: (message, ctx) => {
          if (message.event !== 'train') return;
          attempts++;
          // The first attempt loses the other process's partial; the second does not.
          other.alive = attempts > 1;
          setTimeout(() => direct(message, ctx), 50);
        },
        1: other.behaviour(1),
        2: other.behaviour(2),
      },
      remotePartials: other,
    });
    await s.done;
    expect(s.started.map((e) => e.attempt)).toEqual([1, 2]);
    const record = await db.rounds.get(s.run.id, 1);
    expect(new Set(record.participantClientIds)).toEqual(new Set(fed.clientIds));
    expect(await checkpointOf(s.run.id, 1)).toBe(sha256(weightsToBytes(exactMean([0, 1, 2], 1))));
  });
});
