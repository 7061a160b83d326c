import { readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import {
  CLIENT_NICENESS,
  formatPhaseSummary,
  formatRoundLine,
  type RoundTiming,
  simulate,
} from '@tessera/cli';
import { createLogger } from '@tessera/coordinator';
import { type Database, openDatabase, type RoundRecord } from '@tessera/db';
import { ROUND_PHASES, roundTotalMs } from '@tessera/protocol';
import { verifyRun } from '@tessera/research';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NODE_AUTO_BACKEND } from './harness.js';

/** The niceness of each child process of this one whose command line names `script`. */
function childNiceness(script: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the command name, which is in parentheses and may hold spaces.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) !== process.pid) continue;
      if (!readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(script)) continue;
      found.push(Number(fields[16]));
    } catch {
      // Gone between the listing and the read.
    }
  }
  return found;
}

let db: Database;
const logs: string[] = [];
beforeEach(async () => {
  db = await openDatabase({ inMemory: true });
});
afterEach(async () => {
  await db.close();
});

const run = {
  model: 'fedavg-2nn',
  strategy: 'fedavg',
  strategyOptions: {},
  rounds: 3,
  clientsPerRound: null,
  fractionFit: 0.25,
  minClients: 5,
  roundDeadlineMs: 120_000,
  localEpochs: 1,
  batchSize: 50,
  learningRate: 0.1,
  seed: 11,
};

describe('simulation mode', () => {
  it('runs 20 virtual clients in 2 processes through the real coordinator, recorded and replayable', async () => {
    const seen: number[] = [];
    const announced: RoundRecord[] = [];
    const timings: RoundTiming[] = [];
    const hostNiceness: number[] = [];
    const ownNiceness = getPriority(process.pid);
    const result = await simulate({
      db,
      logger: createLogger('warn', (line) => logs.push(line)),
      clients: 20,
      processes: 2,
      partition: 'iid',
      partitionSeed: 3,
      holdoutFraction: 0,
      run,
      onRound: (round, timing) => {
        seen.push(round.number);
        announced.push(round);
        timings.push(timing);
        hostNiceness.push(...childNiceness('sim-host'));
      },
    });
    expect(seen).toEqual([1, 2, 3]);
    // The client hosts shared this machine's cores at niceness 10; the coordinator kept its own.
    expect(result.clientNiceness).toBe(CLIENT_NICENESS);
    expect(hostNiceness).toHaveLength(6);
    expect(new Set(hostNiceness)).toEqual(new Set([Math.max(CLIENT_NICENESS, ownNiceness)]));
    expect(getPriority(process.pid)).toBe(ownNiceness);
    expect(result.timings).toEqual(timings);
    // Each round as simulate prints it: its whole time, phase by phase, as recorded.
    let roundsMs = 0;
    for (const [index, record] of announced.entries()) {
      const total = roundTotalMs(record.phases);
      if (total === null || record.phases === null) throw new Error('round without phases');
      expect(record).toEqual(result.rounds[index]);
      // Central evaluation of 10,000 MNIST images and local training take time; commit writes.
      expect(record.phases.trainingMs).toBeGreaterThan(0);
      expect(record.phases.evaluationMs).toBeGreaterThan(0);
      expect(record.phases.commitMs).toBeGreaterThan(0);
      // The whole round is more than the attempt durationMs measures (commit, evaluation).
      expect(total).toBeGreaterThan(record.durationMs);
      roundsMs += total;
      const line = formatRoundLine(record);
      expect(line).toMatch(
        new RegExp(`^round +${record.number}  5 clients  test accuracy 0\\.\\d{4}`),
      );
      for (const { label } of ROUND_PHASES) expect(line).toMatch(new RegExp(`${label} \\d`));
      // The hosts timed each of the 5 trainings. A host trains its clients one at a time, so
      // its summed training fits in the round's training phase; interleaved, each training
      // would count the others' time and the sum of the host with 3 clients would not.
      const timing = timings[index] as RoundTiming;
      expect(timing.trained).toBe(5);
      expect(timing.trainingMs).toBeGreaterThan(0);
      expect(timing.trainingMs).toBeLessThanOrEqual(record.phases.trainingMs);
      // /healthz was asked during the round, from a process of its own.
      expect(timing.healthz?.samples).toBeGreaterThan(0);
      expect(timing.healthz?.p99Ms).toBeGreaterThanOrEqual(timing.healthz?.p50Ms ?? 0);
      const timed = formatRoundLine(record, timing);
      expect(timed.startsWith(`${line}\n      pure training `)).toBe(true);
      expect(timed).toMatch(/round = \d+\.\d\dx\); \/healthz p50 [\d.]+ ms, p99 [\d.]+ ms/);
    }
    // The rounds' phases fit within the simulation's wall time (which also starts processes).
    expect(roundsMs).toBeLessThanOrEqual(result.wallMs);
    const summary = formatPhaseSummary(result.rounds);
    expect(summary).toContain('where the time went (3 rounds,');
    expect(summary.trim().split('\n')).toHaveLength(1 + ROUND_PHASES.length);
    const timedSummary = formatPhaseSummary(result.rounds, result.timings);
    expect(timedSummary.startsWith(summary.trimEnd())).toBe(true);
    expect(timedSummary).toMatch(
      /the clients' pure training [\d.]+ (s|ms): the rounds took \d+\.\d\dx that/,
    );
    expect(timedSummary).toMatch(/\/healthz p99 per round: [\d.]+, [\d.]+, [\d.]+ ms/);
    expect(result.run).toMatchObject({
      origin: 'simulation',
      status: 'completed',
      currentRound: 3,
      config: { keepUpdates: true, data: { numClients: 20, partition: 'iid' } },
    });
    const everyone = new Set<string>();
    for (const round of result.rounds) {
      // C = 0.25 of 20 clients; each holds 60000 / 20 examples and trains on all of them.
      expect(round.participantClientIds).toHaveLength(5);
      expect(round.numExamples).toBe(5 * 3000);
      expect(round.centralNumExamples).toBe(10_000);
      // Without held-out data the clients are not asked for federated evaluation.
      expect(round.federatedNumExamples).toBeNull();
      for (const id of round.selectedClientIds) everyone.add(id);
    }
    expect(result.rounds.at(-1)?.centralAccuracy).toBeGreaterThan(0.85);
    expect(everyone.size).toBeGreaterThan(5);
    expect((await db.clients.list(result.run.federationId)).length).toBe(20);
    const updates = await db.rounds.allUpdates(result.run.id);
    expect(
      updates.every((u) => u.kept && u.runtime === 'node' && u.backend === NODE_AUTO_BACKEND),
    ).toBe(true);
    expect((await verifyRun(db, result.run.id)).identical).toBe(true);
  });

  it('stops as completed at the first round that reaches the target accuracy', async () => {
    const result = await simulate({
      db,
      logger: createLogger('warn', (line) => logs.push(line)),
      clients: 20,
      processes: 2,
      partition: 'iid',
      partitionSeed: 3,
      holdoutFraction: 0,
      run: { ...run, rounds: 50 },
      targetAccuracy: 0.5,
    });
    expect(result.roundsToTarget).toBe(1);
    expect(result.run.status).toBe('completed');
    // Round 2 trains while round 1 is evaluated: it may have committed before round 1's
    // accuracy was known, and no round after it begins.
    expect([1, 2]).toContain(result.run.currentRound);
    expect(result.rounds.map((round) => round.number)).toEqual(
      Array.from({ length: result.run.currentRound }, (_, index) => index + 1),
    );
  });
});
