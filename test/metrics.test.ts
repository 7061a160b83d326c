import { PROTOCOL_VERSION, type TrainInstruction } from '@tessera/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFederation, type Harness, quickRun, startHarness, waitFor } from './harness.js';
import {
  ackCode,
  closeRawSockets,
  openRawSocket,
  rawClientInfo,
  sendWithAck,
} from './raw-client.js';

/**
 * Observability (issue 16): GET /metrics in the Prometheus text format, scraped after a real
 * run over real sockets; every label value comes from a fixed set, never from a client; the
 * scrape needs the admin or the metrics token where the API is closed; logs are JSON lines
 * that name the run, round and client they are about.
 */

/** `name{labels} value` lines of a scrape, as a map from the series (name + labels) to its value. */
function series(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}

let h: Harness;
let tokens: { token: string; client: { id: string } }[];
let federationId: string;

beforeAll(async () => {
  h = await startHarness();
  ({ federationId, tokens } = await createFederation(h, 2));
});
afterAll(async () => {
  closeRawSockets();
  await h?.dispose();
});

const scrape = async (url: string, token?: string) => {
  const response = await fetch(`${url}/metrics`, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  return {
    status: response.status,
    type: response.headers.get('content-type'),
    text: await response.text(),
  };
};

describe('GET /metrics after a run', () => {
  it('counts rounds, accepted and refused replies by code, bytes both ways, clients by runtime and known backend', async () => {
    // Two raw clients: one answers with the weights it got, one first with a wrong length.
    const trains: TrainInstruction[] = [];
    const acks: string[] = [];
    const sockets = tokens.map((issued, k) => {
      const socket = openRawSocket(h.coordinator.url, {
        token: issued.token,
        protocolVersion: PROTOCOL_VERSION,
        // A backend no Tessera client has: it must show as `other`, not as itself.
        client: rawClientInfo({
          numHoldout: 0,
          runtime: 'node',
          backend: k === 0 ? 'wasm' : `made-up-${k}`,
        }),
      });
      socket.on('train', async (instruction) => {
        trains.push(instruction);
        const reply = {
          status: 'ok',
          runId: instruction.runId,
          round: instruction.round,
          numExamples: 10,
          durationMs: 1,
          metrics: { loss: 1 },
        };
        // Client 1's first update is 8 bytes: refused, and it is out of round 1 (§7.3).
        const weights =
          k === 1 && instruction.round === 1
            ? instruction.weights.subarray(0, 8)
            : instruction.weights;
        acks.push(ackCode(await sendWithAck(socket, 'update', { ...reply, weights })));
      });
      return socket;
    });
    await Promise.all(
      sockets.map(
        (socket) => new Promise<void>((resolve) => socket.on('welcome', () => resolve())),
      ),
    );
    const run = await h.api<{ id: string }>('POST', '/runs', {
      ...quickRun,
      federationId,
      rounds: 2,
      minClients: 1,
    });
    expect((await h.api('POST', `/runs/${run.body.id}/start`)).status).toBe(202);
    await waitFor(
      async () => (await h.db.runs.get(run.body.id)).status === 'completed',
      'run completed',
    );

    await waitFor(() => acks.length === 4, 'every ack back');
    expect(acks.sort()).toEqual(['WEIGHTS_LENGTH_MISMATCH', 'ok', 'ok', 'ok']);
    const { status, type, text } = await scrape(h.coordinator.url);
    expect(status).toBe(200);
    expect(type).toContain('text/plain');
    const values = series(text);
    expect(values.get('tessera_rounds_committed_total{strategy="fedavg"}')).toBe(2);
    expect(values.get('tessera_round_attempts_total{strategy="fedavg"}')).toBe(2);
    expect(values.get('tessera_runs_finished_total{status="completed"}')).toBe(1);
    expect(
      values.get('tessera_client_replies_total{event="update",outcome="accepted",code=""}'),
    ).toBe(3);
    expect(
      values.get(
        'tessera_client_replies_total{event="update",outcome="refused",code="WEIGHTS_LENGTH_MISMATCH"}',
      ),
    ).toBe(1);
    expect(values.get('tessera_round_phase_seconds_count{phase="training"}')).toBe(2);
    // Two trains to each of 2 clients and 3 full updates back, each a 2NN (796,840 B).
    const weightBytes = trains[0]?.weights.byteLength ?? 0;
    expect(weightBytes).toBe(796_840);
    expect(values.get('tessera_socket_bytes_total{direction="out"}')).toBeGreaterThan(
      4 * weightBytes,
    );
    expect(values.get('tessera_socket_bytes_total{direction="in"}')).toBeGreaterThan(
      3 * weightBytes,
    );
    expect(values.get('tessera_connected_clients{runtime="node",backend="wasm"}')).toBe(1);
    expect(values.get('tessera_connected_clients{runtime="node",backend="other"}')).toBe(1);
    expect(text).not.toContain('made-up');
    // The engines' and socket edge's database calls, by repository call.
    expect(
      values.get('tessera_database_call_seconds_count{call="rounds.commit",outcome="ok"}'),
    ).toBe(2);
    expect(values.get('tessera_run_leases_held')).toBe(0);
    // Process metrics, with the event-loop lag a load test reads.
    expect(values.has('tessera_process_nodejs_eventloop_lag_seconds')).toBe(true);
    for (const socket of sockets) socket.close();
  });

  it('logs JSON lines that carry the run, round and client ids', () => {
    const lines = h.logs.map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const line of lines) {
      expect(typeof line['level']).toBe('string');
      expect(typeof line['time']).toBe('string');
      expect(line['pid']).toBe(process.pid);
    }
    const refused = lines.find((line) => line['msg'] === 'frame refused');
    expect(refused).toMatchObject({
      level: 'warn',
      code: 'WEIGHTS_LENGTH_MISMATCH',
      event: 'update',
    });
    expect(refused?.['clientId']).toBe(tokens[1]?.client.id);
    const committed = lines.filter((line) => line['msg'] === 'round committed');
    expect(committed.map((line) => line['round'])).toEqual([1, 2]);
    expect(typeof committed[0]?.['runId']).toBe('string');
  });
});

describe('who may scrape', () => {
  let closed: Harness;
  beforeAll(async () => {
    closed = await startHarness({
      adminToken: 'admin-secret-0123456789',
      metricsToken: 'scrape-only-0123456789',
    });
  });
  afterAll(async () => {
    await closed?.dispose();
  });

  it('needs the metrics or the admin token where the API is closed; the metrics token opens nothing else', async () => {
    const url = closed.coordinator.url;
    const anonymous = await scrape(url);
    expect(anonymous.status).toBe(401);
    expect(JSON.parse(anonymous.text).error.code).toBe('UNAUTHORIZED');
    expect((await scrape(url, 'wrong-token')).status).toBe(401);
    expect((await scrape(url, 'scrape-only-0123456789')).status).toBe(200);
    expect((await scrape(url, 'admin-secret-0123456789')).status).toBe(200);
    const runs = await fetch(`${url}/api/runs`, {
      headers: { authorization: 'Bearer scrape-only-0123456789' },
    });
    expect(runs.status).toBe(401);
  });
});
