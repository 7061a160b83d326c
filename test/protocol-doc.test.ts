import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MAX_CATEGORIES, MAX_CATEGORY_LENGTH } from '@tessera/data';
import {
  type Ack,
  AUTH_DEADLINE_MS,
  CLIENT_FRAME_LIMITS,
  DEFAULT_MAX_FRAME_BYTES,
  ErrorCode,
  type EvaluateInstruction,
  HANDSHAKE_RATE_LIMITS,
  PacketType,
  PRE_AUTH_MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  type RoundClosed,
  TRANSPORT_MARGIN_BYTES,
  type TrainInstruction,
  WIRE_LIMITS,
  type WireError,
} from '@tessera/protocol';
import { Packr } from 'msgpackr';
import { afterEach, describe, expect, it } from 'vitest';
import { type Harness, startHarness, waitFor } from './harness.js';
import { closeRawSockets, openRawSocket } from './raw-client.js';

/**
 * docs/protocol.md §12 (the worked example), replayed against a real coordinator: every frame
 * line of the example (`# 6. S→C binary, 797,051 B: train`) must state the byte count that the
 * coordinator sends or that the example's client sends, and every frame the replay labels must
 * be in the document, so the text cannot drift from the code.
 */

const plain = new Packr({ useRecords: false });
const doc = readFileSync(fileURLToPath(new URL('../docs/protocol.md', import.meta.url)), 'utf8');

/** The example's frame lines: label -> bytes. */
function documentedFrames(): Map<string, number> {
  const section = doc.slice(doc.indexOf('## 12. Worked example'), doc.indexOf('## 13.'));
  const frames = new Map<string, number>();
  for (const match of section.matchAll(
    /^# (\d+[a-z]?)\. (?:S→C|C→S) (?:text|binary), ([\d,]+) B:/gm,
  )) {
    frames.set(match[1] as string, Number((match[2] as string).replaceAll(',', '')));
  }
  return frames;
}

let harness: Harness | undefined;
afterEach(async () => {
  closeRawSockets();
  await harness?.dispose();
  harness = undefined;
});

/** A socket.io client that records the size of every Engine.IO packet it sends and receives. */
function recordingClient(url: string, auth: Record<string, unknown>) {
  const socket = openRawSocket(url, auth);
  const received: number[] = [];
  const sent: number[] = [];
  /** Last size received per event name, or per packet type for other packets. */
  const byName = new Map<string, number>();
  let openPacket = '';
  const size = (data: unknown) =>
    typeof data === 'string' ? data.length : (data as Uint8Array).byteLength;
  const nameOf = (data: unknown): string => {
    if (typeof data === 'string') return 'text';
    const packet = plain.unpack(data as Uint8Array) as { type: number; data?: unknown };
    return packet.type === PacketType.EVENT && Array.isArray(packet.data)
      ? String(packet.data[0])
      : (Object.keys(PacketType).find(
          (k) => PacketType[k as keyof typeof PacketType] === packet.type,
        ) ?? '?');
  };
  // The Manager creates its Engine.IO socket synchronously; it opens later, so no frame is missed.
  const engine = socket.io.engine;
  engine.on('packet', (packet) => {
    if (packet.type === 'open') {
      openPacket = `0${String(packet.data)}`;
      received.push(openPacket.length);
    } else if (packet.type === 'message') {
      received.push(size(packet.data));
      byName.set(nameOf(packet.data), size(packet.data));
    }
  });
  engine.on('packetCreate', (packet) => {
    if (packet.type === 'message') sent.push(size(packet.data));
  });
  return {
    socket,
    /** Bytes of the last frame received / sent so far. */
    lastReceived: () => received.at(-1) ?? 0,
    lastSent: () => sent.at(-1) ?? 0,
    received,
    sent,
    sizeOf: (name: string) => byName.get(name) ?? 0,
    openPacket: () => openPacket,
  };
}

const exampleClient = {
  name: 'my-python-client',
  version: '0.1.0',
  runtime: 'other',
  backend: 'numpy',
  numExamples: 540,
} as const;

describe('docs/protocol.md §12, the worked example', () => {
  it('states the byte counts the coordinator sends', async () => {
    harness = await startHarness();
    const h = harness;
    const federation = await h.api<{ id: string }>('POST', '/federations', {
      name: 'protocol example',
    });
    const issued = await h.api<{ token: string }>(
      'POST',
      `/federations/${federation.body.id}/clients`,
      { organisation: 'St Elsewhere Hospital' },
    );
    const token = issued.body.token;
    const measured = new Map<string, number>();
    const auth = { token, protocolVersion: PROTOCOL_VERSION, client: exampleClient };

    const c = recordingClient(h.coordinator.url, auth);
    const trains: TrainInstruction[] = [];
    const evaluations: EvaluateInstruction[] = [];
    const closedRounds: RoundClosed[] = [];
    const sizes = new Map<unknown, number>();
    c.socket.on('train', (t) => {
      sizes.set(t, c.lastReceived());
      trains.push(t);
    });
    c.socket.on('evaluate', (e) => {
      sizes.set(e, c.lastReceived());
      evaluations.push(e);
    });
    c.socket.on('round-closed', (n) => {
      sizes.set(n, c.lastReceived());
      closedRounds.push(n);
    });
    await new Promise<void>((resolve) => c.socket.on('welcome', () => resolve()));
    // open, CONNECT reply, welcome
    measured.set('2', c.received[0] ?? 0);
    measured.set('3', c.sent[0] ?? 0);
    measured.set('4', c.received[1] ?? 0);
    measured.set('5', c.received[2] ?? 0);
    const openPacket = c.openPacket();

    const run = await h.api<{ id: string }>('POST', '/runs', {
      federationId: federation.body.id,
      model: 'fedavg-2nn',
      rounds: 3,
      clientsPerRound: 1,
      minClients: 1,
      localEpochs: 1,
      batchSize: 10,
      learningRate: 0.05,
      seed: 5,
    });
    expect(run.status).toBe(201);
    await h.api('POST', `/runs/${run.body.id}/start`);

    const ack = async (
      event: 'update' | 'evaluation',
      reply: unknown,
      label: string,
      ackLabel: string,
    ) => {
      const answer = (await c.socket.timeout(30_000).emitWithAck(event, reply)) as Ack;
      measured.set(label, c.sent.at(-1) ?? 0);
      measured.set(ackLabel, c.lastReceived());
      return answer;
    };

    const round1 = await waitFor(() => trains[0], 'train round 1');
    measured.set('6', sizes.get(round1) ?? 0);
    // The example's sizes take config.seed as a 5-byte uint32 (any derived seed ≥ 2^16).
    expect(round1.config.seed, 'pick another run seed').toBeGreaterThanOrEqual(2 ** 16);
    // The run's own field names, in the order the example prints them (§5.2, §12).
    expect(Object.keys(round1.config)).toEqual([
      'localEpochs',
      'batchSize',
      'learningRate',
      'seed',
    ]);
    expect(round1.config).toMatchObject({ localEpochs: 1, batchSize: 10, learningRate: 0.05 });
    const { runId } = round1;
    c.socket.emit('progress', {
      runId,
      round: 1,
      epoch: 1,
      epochs: 1,
      batch: 27,
      batches: 54,
      loss: 0.9412,
    });
    await waitFor(() => c.sent.length >= 2, 'progress to be sent');
    measured.set('7', c.sent.at(-1) ?? 0);
    const update = (round: number, weights: Uint8Array) => ({
      status: 'ok',
      runId,
      round,
      weights,
      numExamples: 540,
      durationMs: 812,
      metrics: { loss: 0.6925, accuracy: 0.8167, samplesPerSecond: 665 },
    });
    expect(await ack('update', update(1, round1.weights), '9', '10')).toEqual({ ok: true });

    const evaluate1 = await waitFor(() => evaluations[0], 'evaluate round 1');
    measured.set('11', sizes.get(evaluate1) ?? 0);
    const evaluation = (round: number) => ({
      status: 'ok',
      runId,
      round,
      numExamples: 60,
      loss: 0.4121,
      accuracy: 0.8833,
    });
    expect(await ack('evaluation', evaluation(1), '12a', '12b')).toEqual({ ok: true });

    // Round 2: one float short, refused; the attempt has no update left, so round 2 is retried
    // and samples this client again.
    const round2 = await waitFor(() => trains[1], 'train round 2');
    measured.set('13a', sizes.get(round2) ?? 0);
    const short = await ack('update', update(2, round2.weights.subarray(0, 796_836)), '13b', '13c');
    expect(short).toMatchObject({ ok: false, error: { code: ErrorCode.WEIGHTS_LENGTH_MISMATCH } });
    const retry = await waitFor(() => trains[2], 'the retry of round 2');
    expect(retry.round).toBe(2);
    measured.set('13d', sizes.get(retry) ?? 0);
    expect(await ack('update', update(2, retry.weights), '13e', '13f')).toEqual({ ok: true });
    await waitFor(() => evaluations[1], 'evaluate round 2');
    expect(await ack('evaluation', evaluation(2), '13g', '13h')).toEqual({ ok: true });

    // Round 3 is left unanswered and the run stopped: round-closed.
    await waitFor(() => trains[3], 'train round 3');
    await h.api('POST', `/runs/${run.body.id}/stop`);
    const closed = await waitFor(() => closedRounds[0], 'round-closed');
    expect(closed).toMatchObject({ round: 3, reason: 'run stopped' });
    measured.set('14a', sizes.get(closed) ?? 0);

    // A second connection with the same token replaces the first: rejected, then DISCONNECT.
    const rejected = new Promise<WireError>((resolve) => c.socket.on('rejected', resolve));
    const disconnected = new Promise((resolve) => c.socket.on('disconnect', resolve));
    const second = recordingClient(h.coordinator.url, auth);
    expect(await rejected).toMatchObject({ code: ErrorCode.CONFLICT });
    await disconnected;
    measured.set('14b', c.sizeOf('rejected'));
    measured.set('14c', c.sizeOf('DISCONNECT'));
    second.socket.disconnect();

    // A wrong token: CONNECT_ERROR.
    const wrong = recordingClient(h.coordinator.url, { ...auth, token: `tsr_${'x'.repeat(43)}` });
    await new Promise<void>((resolve) => wrong.socket.on('connect_error', () => resolve()));
    measured.set('14d', wrong.sizeOf('CONNECT_ERROR'));

    const documented = documentedFrames();
    expect(Object.fromEntries(documented)).toEqual(Object.fromEntries(measured));
    // The open packet as §2.2 and §12 print it: same length and the same maxPayload.
    for (const line of doc.matchAll(/^0\{"sid".*$/gm)) {
      expect(line[0].length).toBe(openPacket.length);
      expect(line[0]).toContain(openPacket.slice(openPacket.indexOf('"upgrades"')));
    }
  }, 180_000);

  it('§5.2 states the bounds of train.strategy and the FedProx setting of limits.ts', () => {
    const section = doc.slice(doc.indexOf('### 5.2 `train`'), doc.indexOf('### 5.3'));
    expect(section.replace(/\s+/g, ' ')).toContain(
      `≤ ${WIRE_LIMITS.maxStrategySettings} settings, names and text values ≤ ${WIRE_LIMITS.maxStrategyTextLength} chars`,
    );
    expect(section).toMatch(
      new RegExp(`\\| \`proximalMu\` +\\|.*\\| 0 … ${WIRE_LIMITS.maxProximalMu} *\\|`),
    );
  });

  it('§3.5 and §5.10 state the bounds of a statistics reply', () => {
    const n = (value: number) => value.toLocaleString('en-US');
    const prescan = doc.slice(doc.indexOf('### 3.5'), doc.indexOf('### 3.4'));
    expect(prescan).toContain(`| ${n(CLIENT_FRAME_LIMITS.maxElements)} per frame`);
    const section = doc.slice(doc.indexOf('### 5.10 `statistics`'), doc.indexOf('## 6.'));
    const flat = section.replace(/\s+/g, ' ');
    expect(flat).toContain(
      `At most ${n(MAX_CATEGORIES)} categories per column and ${n(WIRE_LIMITS.maxStatisticsCategories)} over the whole reply`,
    );
    expect(flat).toContain(`1–${MAX_CATEGORY_LENGTH} UTF-16 code units`);
  });

  it('§9 states the limits of packages/protocol/src/limits.ts', () => {
    const section = doc.slice(doc.indexOf('## 9. Limits and timing'), doc.indexOf('## 10.'));
    const n = (value: number) => value.toLocaleString('en-US');
    const stated = [
      `${n(DEFAULT_MAX_FRAME_BYTES)} B`,
      `${n(DEFAULT_MAX_FRAME_BYTES + TRANSPORT_MARGIN_BYTES)} B`,
      `≤ ${n(PRE_AUTH_MAX_FRAME_BYTES)} B`,
      `≤ ${n(CLIENT_FRAME_LIMITS.maxElements)} elements, depth ≤ ${CLIENT_FRAME_LIMITS.maxDepth}, \`str\` ≤ ${n(CLIENT_FRAME_LIMITS.maxStringBytes)} B`,
      `≤ ${WIRE_LIMITS.maxMetrics} entries, keys ≤ ${WIRE_LIMITS.maxMetricKeyLength} chars`,
      `≤ 10¹²`,
      `0 … ${n(WIRE_LIMITS.maxNumExamples)}`,
      `0 … ${n(WIRE_LIMITS.maxInteger)}`,
      `${AUTH_DEADLINE_MS / 1000} s from Engine.IO open`,
      `${HANDSHAKE_RATE_LIMITS.perAddress.capacity} attempts at once, then 1 per second`,
      `${HANDSHAKE_RATE_LIMITS.perToken.capacity} attempts at once, then 1 per ${HANDSHAKE_RATE_LIMITS.perToken.refillMs / 1000} s`,
      `≤ ${WIRE_LIMITS.maxStrategySettings} settings; name, setting names and text values ≤ ${WIRE_LIMITS.maxStrategyTextLength} chars`,
      `| \`train.strategy.settings.proximalMu\`     | 0 … ${WIRE_LIMITS.maxProximalMu} `,
      `≤ ${n(WIRE_LIMITS.maxStatisticsColumns)} columns; ≤ ${n(MAX_CATEGORIES)} categories per column, ≤ ${n(WIRE_LIMITS.maxStatisticsCategories)} in all; category 1–${MAX_CATEGORY_LENGTH} chars`,
    ];
    for (const text of stated) expect(section, text).toContain(text);
    expect(WIRE_LIMITS.maxMetricMagnitude).toBe(1e12);
    expect(HANDSHAKE_RATE_LIMITS.perAddress.refillMs).toBe(1000);
  });
});
