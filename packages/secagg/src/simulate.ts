/**
 * A whole SecAgg round in memory: n clients and the server, messages passed by hand, clients
 * dropping out at the step a schedule names. For tests, the bench, and as the reference of
 * how the engine drives the two state machines.
 */
import { SecAggClient } from './client.js';
import type { AdvertiseKeys, MaskedInput, ShareKeys, UnmaskResponse } from './messages.js';
import type { SecAggInput } from './quantise.js';
import { type SecAggResult, SecAggServer } from './server.js';
import type { SecAggSetup } from './setup.js';

/** Who stops answering after which of their messages (a client in none of them stays). */
export interface DropoutSchedule {
  /** Never sends its keys. */
  beforeAdvertising?: readonly string[];
  /** Sends its keys, then no shares. */
  afterAdvertising?: readonly string[];
  /** Sends its shares, then no masked input. */
  afterSharing?: readonly string[];
  /** Sends its masked input, then no unmasking shares. */
  afterMasking?: readonly string[];
}

/** Every message the server received, by step: its whole view of the round. */
export interface ServerView {
  advertisements: Map<string, AdvertiseKeys>;
  shareKeys: Map<string, ShareKeys>;
  maskedInputs: Map<string, MaskedInput>;
  unmaskResponses: Map<string, UnmaskResponse>;
}

export interface SimulationStep {
  /** Bytes of binary payload (keys, ciphertexts, vectors, shares) sent client→server. */
  upBytes: number;
  /** Bytes of binary payload sent server→clients, all recipients together. */
  downBytes: number;
  /** Wall time spent in client code (all clients) and in server code. */
  clientMs: number;
  serverMs: number;
}

export interface SimulationResult {
  result: SecAggResult;
  view: ServerView;
  steps: Record<'advertise' | 'share' | 'mask' | 'unmask', SimulationStep>;
}

/** What a hook sees between steps: the server, every client, and the messages so far. */
export interface SimulationContext {
  server: SecAggServer;
  clients: ReadonlyMap<string, SecAggClient>;
  view: ServerView;
}

export interface SimulationOptions {
  /** Bytes of one message on the wire (default: the sum of its binary fields). */
  measure?: (message: unknown) => number;
  /** Keep every message in `view` (default true; a bench at model size turns it off). */
  recordView?: boolean;
  /** Runs before the server closes each step: the place to inject bad messages. */
  beforeClose?: (
    step: 'advertise' | 'share' | 'mask' | 'unmask',
    context: SimulationContext,
  ) => Promise<void>;
}

function binaryBytes(value: unknown): number {
  if (value instanceof Uint8Array) return value.length;
  if (Array.isArray(value))
    return value.reduce((total: number, item) => total + binaryBytes(item), 0);
  if (value instanceof Map) return binaryBytes([...value.values()]);
  if (typeof value === 'object' && value !== null) return binaryBytes(Object.values(value));
  return 0;
}

function emptyStep(): SimulationStep {
  return { upBytes: 0, downBytes: 0, clientMs: 0, serverMs: 0 };
}

/** Runs one round of `setup` with each client's input; returns the server's result and view. */
export async function simulateRound(
  setup: SecAggSetup,
  inputs: ReadonlyMap<string, SecAggInput>,
  dropouts: DropoutSchedule = {},
  options: SimulationOptions = {},
): Promise<SimulationResult> {
  const now = () => performance.now();
  const size = options.measure ?? binaryBytes;
  const record = options.recordView ?? true;
  const steps = {
    advertise: emptyStep(),
    share: emptyStep(),
    mask: emptyStep(),
    unmask: emptyStep(),
  };
  const view: ServerView = {
    advertisements: new Map(),
    shareKeys: new Map(),
    maskedInputs: new Map(),
    unmaskResponses: new Map(),
  };
  let started = now();
  const server = new SecAggServer(setup);
  steps.advertise.serverMs += now() - started;

  const gone = new Set(dropouts.beforeAdvertising ?? []);
  const clients = new Map<string, SecAggClient>();
  const context: SimulationContext = { server, clients, view };
  for (const id of setup.clientIds) {
    if (gone.has(id)) continue;
    started = now();
    const client = await SecAggClient.create(setup, id);
    const message = client.advertise();
    steps.advertise.clientMs += now() - started;
    steps.advertise.upBytes += size(message);
    if (record) view.advertisements.set(id, message);
    started = now();
    await server.receiveAdvertise(id, message);
    steps.advertise.serverMs += now() - started;
    clients.set(id, client);
  }
  await options.beforeClose?.('advertise', context);
  started = now();
  const advertised = server.closeAdvertising();
  steps.advertise.serverMs += now() - started;
  for (const id of dropouts.afterAdvertising ?? []) gone.add(id);

  for (const [id, client] of clients) {
    if (gone.has(id)) continue;
    steps.advertise.downBytes += size(advertised);
    started = now();
    const message = await client.shareKeys(advertised);
    steps.share.clientMs += now() - started;
    steps.share.upBytes += size(message);
    if (record) view.shareKeys.set(id, message);
    started = now();
    await server.receiveShareKeys(id, message);
    steps.share.serverMs += now() - started;
  }
  await options.beforeClose?.('share', context);
  started = now();
  const bundles = server.closeSharing();
  steps.share.serverMs += now() - started;
  for (const id of dropouts.afterSharing ?? []) gone.add(id);

  for (const [id, bundle] of bundles) {
    if (gone.has(id)) continue;
    const client = clients.get(id) as SecAggClient;
    const input = inputs.get(id);
    if (input === undefined) throw new Error(`no input for ${id}`);
    steps.share.downBytes += size(bundle);
    started = now();
    const message = await client.maskInput(bundle, input);
    steps.mask.clientMs += now() - started;
    steps.mask.upBytes += size(message);
    if (record) view.maskedInputs.set(id, message);
    started = now();
    await server.receiveMaskedInput(id, message);
    steps.mask.serverMs += now() - started;
  }
  await options.beforeClose?.('mask', context);
  started = now();
  const request = server.closeMasking();
  steps.mask.serverMs += now() - started;
  for (const id of dropouts.afterMasking ?? []) gone.add(id);

  for (const id of request.survivors) {
    if (gone.has(id)) continue;
    const client = clients.get(id) as SecAggClient;
    steps.mask.downBytes += size(request);
    started = now();
    const message = client.unmask(request);
    steps.unmask.clientMs += now() - started;
    steps.unmask.upBytes += size(message);
    if (record) view.unmaskResponses.set(id, message);
    started = now();
    await server.receiveUnmaskResponse(id, message);
    steps.unmask.serverMs += now() - started;
  }
  await options.beforeClose?.('unmask', context);
  started = now();
  const result = await server.finish();
  steps.unmask.serverMs += now() - started;
  return { result, view, steps };
}
