import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { networkInterfaces } from 'node:os';
import { fileURLToPath } from 'node:url';
import { MODEL_NAMES, modelSpec } from '@tessera/ml';
import {
  type Ack,
  AUTH_DEADLINE_MS,
  CLIENT_FRAME_LIMITS,
  DEFAULT_MAX_FRAME_BYTES,
  ErrorCode,
  type EvaluateInstruction,
  encodePacket,
  HANDSHAKE_RATE_LIMITS,
  PacketType,
  PROTOCOL_VERSION,
  TRANSPORT_MARGIN_BYTES,
  type TrainInstruction,
  WIRE_LIMITS,
  weightsToBytes,
} from '@tessera/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createFederation, type Harness, quickRun, startHarness, waitFor } from './harness.js';
import {
  ackCode,
  type ClientSocket,
  closeRawSockets,
  connectRaw as connect,
  rawClientInfo,
  sendWithAck,
} from './raw-client.js';

/**
 * Limits before trust (issue 12): values bounded at the decoder, frames bounded before the
 * handshake and by the pre-scan after it, the auth deadline, the handshake rate limits, and the
 * transport refusals (bad EIO, polling). A real coordinator on port 0; raw Socket.IO clients.
 */

let harness: Harness | undefined;
const raw: WebSocket[] = [];
afterEach(async () => {
  closeRawSockets();
  for (const ws of raw.splice(0)) ws.terminate();
  await harness?.dispose();
  harness = undefined;
});

const send = (socket: ClientSocket, event: 'update' | 'evaluation', frame: unknown) =>
  sendWithAck(socket, event, frame, 20_000);
const codeOf = ackCode;
const client = rawClientInfo();
const fieldOf = (ack: Ack) => (ack.ok ? undefined : ack.error.data?.['field']);

/** A raw Engine.IO WebSocket that has received the open packet and sent nothing. */
async function openRaw(url: string): Promise<WebSocket> {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`);
  raw.push(ws);
  await new Promise<void>((resolve, reject) => {
    ws.once('message', (data, isBinary) => {
      if (!isBinary && String(data).startsWith('0')) resolve();
      else reject(new Error(`expected the open packet, got ${String(data)}`));
    });
    ws.once('error', reject);
  });
  return ws;
}

const closed = (ws: WebSocket) =>
  new Promise<number>((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) resolve(-1);
    ws.once('close', (code) => resolve(code));
  });

/**
 * The longest gap between timer ticks while `work` runs: how long the event loop (which the
 * in-process coordinator shares) was blocked.
 */
async function longestStall<T>(work: () => Promise<T>): Promise<{ stallMs: number; result: T }> {
  let last = performance.now();
  let stallMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    last = now;
  }, 5);
  try {
    const result = await work();
    await new Promise((resolve) => setTimeout(resolve, 50));
    return { stallMs, result };
  } finally {
    clearInterval(timer);
  }
}

const attackerScript = fileURLToPath(new URL('./wire-attacker.mjs', import.meta.url));

interface AttackOutcome {
  bytes: number;
  closed?: number;
  rejected?: string;
  code?: string;
}

/**
 * Runs test/wire-attacker.mjs: a hostile peer in its own process (building and masking tens of
 * MiB would otherwise block this process, which the coordinator shares). Without a token it
 * sends a map of `entries` short keys before CONNECT; with one, an update with such a metrics map.
 */
function attacker(url: string, entries: number, token?: string): Promise<AttackOutcome> {
  const child = spawn(
    process.execPath,
    [attackerScript, url, String(entries), ...(token ? [token] : [])],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let output = '';
  child.stdout.on('data', (chunk) => {
    output += String(chunk);
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', () => {
      const lines = output.trim().split('\n').filter(Boolean);
      resolve(Object.assign({}, ...lines.map((line) => JSON.parse(line) as object)));
    });
  });
}

describe('values bounded at the decoder (issue 12: one frame from any member fails a run)', () => {
  it('refuses out-of-range counts, huge metrics and NUL text; the run completes with nothing of them', async () => {
    harness = await startHarness();
    const h = harness;
    const { federationId, tokens } = await createFederation(h, 2);

    // A NUL in client.backend at the handshake: refused, nothing registered.
    const nul = await connect(h.coordinator.url, {
      token: tokens[1]?.token,
      protocolVersion: PROTOCOL_VERSION,
      client: { ...client, backend: 'wasm\u0000' },
    });
    expect(nul.error).toMatchObject({
      code: ErrorCode.MALFORMED_FRAME,
      data: { field: 'client.backend' },
    });
    expect(h.coordinator.registry.list()).toHaveLength(0);

    const { socket: rogue } = await connect(h.coordinator.url, {
      token: tokens[0]?.token,
      protocolVersion: PROTOCOL_VERSION,
      client,
    });
    const trains: TrainInstruction[] = [];
    const evaluations: EvaluateInstruction[] = [];
    rogue.on('train', (instruction) => trains.push(instruction));
    rogue.on('evaluate', (instruction) => evaluations.push(instruction));
    await waitFor(() => h.coordinator.registry.list().length === 1, 'the rogue to connect');

    const run = await h.api<{ id: string }>('POST', '/runs', {
      ...quickRun,
      rounds: 1,
      federationId,
      clientsPerRound: 1,
      roundDeadlineMs: 120_000,
    });
    const finished = new Promise((resolve) => h.coordinator.on('run-finished', resolve));
    await h.api('POST', `/runs/${run.body.id}/start`);

    const train = await waitFor(() => trains[0], 'round 1 to reach the rogue');
    const good = {
      status: 'ok',
      runId: train.runId,
      round: train.round,
      weights: weightsToBytes(new Float32Array(train.model.paramCount)),
      numExamples: 10,
      durationMs: 5,
      metrics: { loss: 2, accuracy: 0.5 },
    };
    const badUpdates: Array<[string, Record<string, unknown>, string]> = [
      ['numExamples = 2^31', { numExamples: 2 ** 31 }, 'numExamples'],
      ['durationMs = 2^31', { durationMs: 2 ** 31 }, 'durationMs'],
      ['metrics.loss = 1e308', { metrics: { loss: 1e308 } }, 'metrics.loss'],
      ['a NUL in a metrics key', { metrics: { 'lo\u0000ss': 1 } }, 'metrics.lo\u0000ss'],
    ];
    for (const [what, change, field] of badUpdates) {
      const ack = await send(rogue, 'update', { ...good, ...change });
      expect(codeOf(ack), what).toBe(ErrorCode.MALFORMED_FRAME);
      expect(fieldOf(ack), what).toBe(field);
    }
    // A refusal by the schema leaves the client pending: its correct update is accepted.
    expect(codeOf(await send(rogue, 'update', good))).toBe('ok');

    const evaluate = await waitFor(() => evaluations[0], 'the evaluation to reach the rogue');
    const goodEvaluation = {
      status: 'ok',
      runId: evaluate.runId,
      round: evaluate.round,
      numExamples: 4,
      loss: 0.75,
      accuracy: 0.25,
    };
    for (const [what, change, field] of [
      ['numExamples = 2^31', { numExamples: 2 ** 31 }, 'numExamples'],
      ['loss = 1e308', { loss: 1e308 }, 'loss'],
    ] as const) {
      const ack = await send(rogue, 'evaluation', { ...goodEvaluation, ...change });
      expect(codeOf(ack), what).toBe(ErrorCode.MALFORMED_FRAME);
      expect(fieldOf(ack), what).toBe(field);
    }
    expect(codeOf(await send(rogue, 'evaluation', goodEvaluation))).toBe('ok');

    expect(await finished).toMatchObject({ status: 'completed' });
    const [round] = await h.db.rounds.list(train.runId);
    expect(round).toMatchObject({
      numExamples: 10,
      trainLoss: 2,
      trainAccuracy: 0.5,
      federatedNumExamples: 4,
      federatedLoss: 0.75,
      federatedAccuracy: 0.25,
    });
    const updates = await h.db.rounds.updates(train.runId, 1);
    expect(updates.map((u) => [u.numExamples, u.durationMs, u.metrics])).toEqual([
      [10, 5, { loss: 2, accuracy: 0.5 }],
    ]);
    expect(h.logs.filter((l) => l.includes('frame refused'))).toHaveLength(6);
  });
});

describe('limits before trust (issue 12: one unauthenticated frame can hang the coordinator)', () => {
  it('refuses an 8 MiB map before CONNECT without decoding it; /healthz answers meanwhile', async () => {
    harness = await startHarness();
    const h = harness;
    const { stallMs, result } = await longestStall(async () => {
      const attack = attacker(h.coordinator.url, 1_048_576); // 8 MiB + 5 B
      const health = waitFor(async () => {
        const started = performance.now();
        const status = (await fetch(`${h.coordinator.url}/healthz`)).status;
        return { status, ms: performance.now() - started };
      }, '/healthz');
      return { outcome: await attack, health: await health };
    });
    expect(result.outcome.bytes).toBeGreaterThan(8 * 1024 * 1024);
    expect(result.outcome.bytes).toBeLessThan(DEFAULT_MAX_FRAME_BYTES + TRANSPORT_MARGIN_BYTES);
    // Closed by the parser's refusal, not by the transport cap (1009).
    expect(result.outcome.closed).toBeDefined();
    expect(result.outcome.closed).not.toBe(1009);
    expect(result.health.status).toBe(200);
    // A safety property, not a speed claim: decoding this frame stalled the loop 1.3 s before.
    expect(stallMs).toBeLessThan(500);
  });

  it("refuses an authenticated member's huge metrics map without a long stall", async () => {
    harness = await startHarness();
    const h = harness;
    const { tokens } = await createFederation(h, 1);
    const token = tokens[0]?.token as string;

    // 7 MiB, under the frame limit: the pre-scan refuses it at the map's header; the member
    // gets `rejected` and stays connected (the attacker closes after the answer).
    const under = await longestStall(() => attacker(h.coordinator.url, 900_000, token));
    expect(under.result.bytes).toBeLessThan(DEFAULT_MAX_FRAME_BYTES);
    expect(under.result).toMatchObject({ code: ErrorCode.MALFORMED_FRAME });
    expect(under.result.rejected).toContain(
      `more than ${CLIENT_FRAME_LIMITS.maxElements} map entries`,
    );
    expect(under.stallMs).toBeLessThan(500);

    // 32 MiB, the finding's frame: over the transport cap, the connection is closed unread.
    const over = await longestStall(() => attacker(h.coordinator.url, 4_200_000, token));
    expect(over.result.bytes).toBeGreaterThan(32 * 1024 * 1024);
    expect(over.result.closed).toBe(1009);
    expect(over.stallMs).toBeLessThan(500);
    expect((await fetch(`${h.coordinator.url}/healthz`)).status).toBe(200);
  });

  it('closes a connection that never sends CONNECT after the auth deadline', async () => {
    harness = await startHarness();
    const ws = await openRaw(harness.coordinator.url);
    const opened = performance.now();
    const code = await closed(ws);
    expect(code).toBeGreaterThan(0);
    // Closed by the deadline, not before it (timers fire late on a loaded machine, never early).
    const elapsed = performance.now() - opened;
    expect(elapsed).toBeGreaterThanOrEqual(AUTH_DEADLINE_MS - 100);
    // Generous, but well short of Socket.IO's default 45 s that this deadline replaced.
    expect(elapsed).toBeLessThan(AUTH_DEADLINE_MS + 25_000);
  }, 60_000);

  it('limits handshakes per token with RATE_LIMITED and retryAfterSeconds; other tokens go on', async () => {
    harness = await startHarness();
    const h = harness;
    const { tokens } = await createFederation(h, 1);
    const attempt = (token: string) =>
      connect(h.coordinator.url, { token, protocolVersion: PROTOCOL_VERSION, client });
    const { capacity, refillMs } = HANDSHAKE_RATE_LIMITS.perToken;
    for (let k = 0; k < capacity; k++) {
      expect((await attempt('tsr_guessed')).error?.code).toBe(ErrorCode.UNAUTHORIZED);
    }
    const limited = await attempt('tsr_guessed');
    expect(limited.error).toMatchObject({
      code: ErrorCode.RATE_LIMITED,
      data: { retryAfterSeconds: Math.ceil(refillMs / 1000) },
    });
    expect(limited.error?.message).toMatch(/too many connection attempts from this token/);
    expect((await attempt(tokens[0]?.token as string)).welcome).toBeDefined();
    expect(h.logs.filter((l) => l.includes('"code":"RATE_LIMITED"'))).toHaveLength(1);
  });

  const external = Object.values(networkInterfaces())
    .flat()
    .find((i) => i?.family === 'IPv4' && !i.internal)?.address;

  it.skipIf(external === undefined)(
    'limits handshakes per remote address (a non-loopback one)',
    async () => {
      // The default capacity, refilled too slowly to matter: on a loaded machine 30 refused
      // handshakes can take longer than the default refill gives back.
      harness = await startHarness({
        host: '0.0.0.0',
        handshakeRateLimits: {
          ...HANDSHAKE_RATE_LIMITS,
          perAddress: { ...HANDSHAKE_RATE_LIMITS.perAddress, refillMs: 3_600_000 },
        },
      });
      const url = `http://${external}:${harness.coordinator.port}`;
      const { capacity } = HANDSHAKE_RATE_LIMITS.perAddress;
      const outcomes = [];
      // Distinct tokens, so that only the address bucket empties.
      for (let k = 0; k <= capacity; k++) {
        outcomes.push(
          (
            await connect(url, {
              token: `tsr_guess_${k}`,
              protocolVersion: PROTOCOL_VERSION,
              client,
            })
          ).error?.code,
        );
      }
      expect(outcomes.slice(0, capacity).every((c) => c === ErrorCode.UNAUTHORIZED)).toBe(true);
      expect(outcomes[capacity]).toBe(ErrorCode.RATE_LIMITED);
    },
    // 31 handshakes one after another, each a database lookup: seconds each on a loaded machine.
    240_000,
  );
});

describe('transport refusals (docs/protocol.md §2.1)', () => {
  const upgrade = (url: string, eio: string, transport = 'websocket') =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(`${url}/socket.io/?EIO=${eio}&transport=${transport}`, {
        headers: {
          Connection: 'Upgrade',
          Upgrade: 'websocket',
          'Sec-WebSocket-Version': '13',
          'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        },
      });
      req.on('upgrade', (res, socket) => {
        socket.destroy();
        resolve({ status: res.statusCode ?? 0, body: '' });
      });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (chunk) => {
          body += String(chunk);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });

  it('refuses another EIO before the upgrade, and refuses polling', async () => {
    harness = await startHarness();
    const url = harness.coordinator.url;
    expect(await upgrade(url, '3')).toEqual({ status: 400, body: 'Unsupported protocol version' });
    expect(await upgrade(url, '5')).toEqual({ status: 400, body: 'Unsupported protocol version' });
    expect((await upgrade(url, '4')).status).toBe(101);
    const polling = await fetch(`${url}/socket.io/?EIO=4&transport=polling`);
    expect(polling.status).toBe(400);
    expect(await polling.json()).toEqual({ code: 0, message: 'Transport unknown' });
  });
});

describe('the default frame limit', () => {
  it("fits the largest zoo model's update, 64 metrics and the longest strings", () => {
    const largest = Math.max(...MODEL_NAMES.map((name) => modelSpec(name).paramCount));
    const frame = encodePacket({
      type: PacketType.EVENT,
      nsp: '/',
      id: 2 ** 31 - 1,
      data: [
        'update',
        {
          status: 'ok',
          runId: 'r'.repeat(WIRE_LIMITS.maxIdLength),
          round: WIRE_LIMITS.maxInteger,
          weights: new Uint8Array(largest * 4),
          numExamples: WIRE_LIMITS.maxNumExamples,
          durationMs: WIRE_LIMITS.maxInteger,
          metrics: Object.fromEntries(
            Array.from({ length: WIRE_LIMITS.maxMetrics }, (_, i) => [
              String(i).padStart(WIRE_LIMITS.maxMetricKeyLength, 'm'),
              -WIRE_LIMITS.maxMetricMagnitude / 3,
            ]),
          ),
        },
      ],
    });
    expect(frame.byteLength).toBeLessThan(DEFAULT_MAX_FRAME_BYTES);
  });
});
