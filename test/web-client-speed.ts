import type { ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { type Backend, launchChromium } from './chromium.js';
import { createFederation, type Harness, quickRun, startHarness, waitFor } from './harness.js';

/**
 * Local training speed of the browser client on each backend next to the Node client's, on the
 * same model, example count, batch size and epochs, each measured alone (one client per run, one
 * after the other) through the real clients and a real coordinator. The figure is trainLocal's own
 * samples/s (examples x epochs / training time) as each client reports it per round; round 1 warms
 * up (kernel compilation, WASM start-up) and is left out: the median of the later rounds is shown.
 *
 *   npm run build
 *   node --import tsx --conditions=@tessera/source test/web-client-speed.ts \
 *     [--model fedavg-2nn] [--examples 900] [--rounds 3] [--batch 20] [--epochs 1] \
 *     [--backends webgpu,webgl,wasm]
 */

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'fedavg-2nn' },
    examples: { type: 'string', default: '900' },
    rounds: { type: 'string', default: '3' },
    batch: { type: 'string', default: '20' },
    epochs: { type: 'string', default: '1' },
    backends: { type: 'string', default: 'webgpu,webgl,wasm' },
  },
});
const examples = Number(values.examples);
const rounds = Number(values.rounds);
const runConfig = {
  ...quickRun,
  model: values.model,
  rounds,
  batchSize: Number(values.batch),
  localEpochs: Number(values.epochs),
  roundDeadlineMs: 1_800_000,
};

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? Number.NaN;
};

async function runAlone(h: Harness, federationId: string): Promise<void> {
  const run = await h.api<{ id: string }>('POST', '/runs', { ...runConfig, federationId });
  if (run.status !== 201) throw new Error(`cannot create the run: ${JSON.stringify(run.body)}`);
  const finished = new Promise<{ status: string }>((resolve) =>
    h.coordinator.once('run-finished', resolve),
  );
  await h.api('POST', `/runs/${run.body.id}/start`);
  const outcome = await finished;
  if (outcome.status !== 'completed') {
    throw new Error(`run ${outcome.status}:\n${h.logs.slice(-8).join('\n')}`);
  }
}

// Both clients keep 10% of their examples for federated evaluation: this many leaves `examples`.
async function measureNode(h: Harness): Promise<number[]> {
  const { federationId, tokens } = await createFederation(h, 1);
  const child: ChildProcess = h.spawnClient(tokens[0]?.token as string, [
    '--mnist',
    '0/1',
    '--max-examples',
    String(Math.round(examples / 0.9)),
  ]);
  const perRound: number[] = [];
  child.stdout?.on('data', (chunk: Buffer) => {
    for (const match of chunk.toString().matchAll(/, (\d+) samples\/s,/g)) {
      perRound.push(Number(match[1]));
    }
  });
  await waitFor(() => h.coordinator.registry.list().length === 1, 'the Node client to connect');
  await runAlone(h, federationId);
  await waitFor(() => perRound.length === rounds, 'the Node client to report every round');
  child.kill();
  await waitFor(() => h.coordinator.registry.list().length === 0, 'the Node client to leave');
  return perRound;
}

async function measureBrowser(h: Harness, backend: Backend): Promise<number[]> {
  const { federationId, tokens } = await createFederation(h, 1);
  const browser = await launchChromium(backend);
  try {
    const page = await browser.newPage();
    const invitation = new URLSearchParams({ token: tokens[0]?.token as string });
    await page.goto(`${h.coordinator.url}/join/?backend=${backend}#${invitation}`);
    await page.fill('#sample-count', String(Math.round(examples / 0.9)));
    await page.click('#join');
    await page.waitForSelector('body[data-state="connected"]', { timeout: 120_000 });
    const shownBackend = await page.getAttribute('body', 'data-backend');
    if (shownBackend !== backend) throw new Error(`the page runs on ${shownBackend}`);
    await runAlone(h, federationId);
    const cells = async () =>
      page.$$eval('#rounds tbody tr', (rows) =>
        rows.map((row) => ({
          round: Number(row.getAttribute('data-round')),
          samplesPerSecond: Number(row.querySelector('td:nth-child(8)')?.textContent),
          examples: Number(row.querySelector('td:nth-child(6)')?.textContent),
        })),
      );
    const shown = await waitFor(async () => {
      const rows = await cells();
      return rows.length === rounds && rows.every((r) => r.samplesPerSecond > 0) && rows;
    }, 'the page to show every round');
    if (shown.some((row) => row.examples !== examples)) {
      throw new Error(`the page trained on ${shown[0]?.examples} examples, not ${examples}`);
    }
    return shown.sort((a, b) => a.round - b.round).map((row) => row.samplesPerSecond);
  } finally {
    await browser.close();
  }
}

const harness = await startHarness();
const results: Array<{ client: string; perRound: number[] }> = [];
try {
  results.push({ client: 'node (wasm)', perRound: await measureNode(harness) });
  for (const backend of values.backends.split(',') as Backend[]) {
    results.push({
      client: `browser ${backend}`,
      perRound: await measureBrowser(harness, backend),
    });
  }
} finally {
  await harness.dispose();
}
process.stdout.write(
  `${values.model}, ${examples} examples, batch ${runConfig.batchSize}, ${runConfig.localEpochs} epoch(s), ${rounds} rounds\n`,
);
process.stdout.write(
  `${'client'.padEnd(16)}${'samples/s (median of rounds 2+)'.padStart(34)}   per round\n`,
);
for (const { client, perRound } of results) {
  const steady = median(perRound.slice(1));
  process.stdout.write(
    `${client.padEnd(16)}${String(Math.round(steady)).padStart(34)}   ${perRound.join(', ')}\n`,
  );
}
