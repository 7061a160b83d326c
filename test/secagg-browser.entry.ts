/**
 * Bundled by test/secagg-chromium.test.ts into a page: SecAgg clients of @tessera/secagg
 * running on Chromium's WebCrypto, driven from Node through the test's relay.
 */
import { TesseraError } from '@tessera/protocol';
import { type Curve, SecAggClient, type SecAggSetup, supportedCurves } from '@tessera/secagg';
import { decodeRelay, encodeRelay, type PageAnswer, type Relayed } from './secagg-relay.js';

const clients = new Map<string, SecAggClient>();

function clientOf(id: string): SecAggClient {
  const client = clients.get(id);
  if (client === undefined) throw new Error(`no client ${id} in this page`);
  return client;
}

async function answer(work: () => unknown): Promise<PageAnswer> {
  try {
    return { ok: true, message: encodeRelay(await work()) };
  } catch (error) {
    if (error instanceof TesseraError) {
      const field = error.data?.['field'];
      return typeof field === 'string'
        ? { ok: false, code: error.code, field }
        : { ok: false, code: error.code };
    }
    throw error;
  }
}

const api = {
  curves: (): Promise<Curve[]> => supportedCurves(),
  create: (setup: SecAggSetup, id: string) =>
    answer(async () => {
      clients.set(id, await SecAggClient.create(setup, id));
      return null;
    }),
  advertise: (id: string) => answer(() => clientOf(id).advertise()),
  shareKeys: (id: string, message: Relayed) =>
    answer(() => clientOf(id).shareKeys(decodeRelay(message))),
  maskInput: (id: string, message: Relayed, weights: number[], numExamples: number) =>
    answer(() =>
      clientOf(id).maskInput(decodeRelay(message), {
        weights: Float32Array.from(weights),
        numExamples,
      }),
    ),
  unmask: (id: string, message: Relayed) => answer(() => clientOf(id).unmask(decodeRelay(message))),
};

export type SecAggPageApi = typeof api;

(globalThis as unknown as { tesseraSecAgg: SecAggPageApi }).tesseraSecAgg = api;
