/// <reference lib="dom" />
import { type ClientObserver, TesseraClient } from '@tessera/client/core';
import {
  BACKEND_PREFERENCES,
  type BackendPreference,
  type DataChoice,
  type LabelledFile,
  type PageToWorker,
  type ViewEvent,
  type WorkerToPage,
} from './messages.js';
import { WorkerTrainer } from './worker-trainer.js';

// The page: a form, then a view of the session. It holds the connection to the coordinator (the
// shared client core, @tessera/client) and never reads the data itself: the picked File objects
// go to the training worker, which decodes them, trains, and hands back weights and metrics.

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page lacks #${id}`);
  return found as T;
}

const form = element<HTMLFormElement>('join-form');
const coordinatorInput = element<HTMLInputElement>('coordinator');
const tokenInput = element<HTMLInputElement>('token');
const sampleCountInput = element<HTMLInputElement>('sample-count');
const imagesInput = element<HTMLInputElement>('images');
const imagesSummary = element<HTMLSpanElement>('images-summary');
const dropZone = element<HTMLDivElement>('drop-zone');
const csvInput = element<HTMLInputElement>('csv');
const csv255Input = element<HTMLInputElement>('csv-255');
const backendSelect = element<HTMLSelectElement>('backend');
const formError = element<HTMLParagraphElement>('form-error');
const session = element<HTMLElement>('session');
const banner = element<HTMLParagraphElement>('banner');
const stateText = element<HTMLElement>('state');
const backendText = element<HTMLElement>('backend-name');
const dataText = element<HTMLElement>('data-description');
const progressBar = element<HTMLProgressElement>('progress-bar');
const progressText = element<HTMLElement>('progress');
const timeSpentText = element<HTMLElement>('time-spent');
const roundsBody = element<HTMLTableElement>('rounds').tBodies[0] as HTMLTableSectionElement;
const logList = element<HTMLOListElement>('log');

/**
 * An invitation link carries the coordinator and token in the fragment (#coordinator=..&token=..):
 * browsers never send the fragment in requests, so the token stays out of server logs. It is
 * removed from the address bar once read, so it is not bookmarked or shared by accident.
 */
function readInvitation(): void {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const coordinator = fragment.get('coordinator');
  const token = fragment.get('token');
  if (coordinator) coordinatorInput.value = coordinator;
  if (token) tokenInput.value = token;
  if (coordinator || token) history.replaceState(null, '', location.pathname + location.search);
  // Served by a coordinator at /join/: that coordinator is the natural default.
  if (!coordinatorInput.value && /\/join\/?$/.test(location.pathname)) {
    coordinatorInput.value = location.origin;
  }
  const backend = new URLSearchParams(location.search).get('backend');
  if (backend && (BACKEND_PREFERENCES as readonly string[]).includes(backend)) {
    backendSelect.value = backend;
  } else if (backend) {
    formError.textContent = `?backend=${backend} is not one of ${BACKEND_PREFERENCES.join(', ')}; using auto`;
  }
}

// ---- picking images: the directory picker or drag and drop ---------------------------------

let pickedImages: LabelledFile[] = [];
let ignoredFiles = 0;

/**
 * Keeps the images that sit in a class folder (<picked folder>/<class>/<image>); the class is
 * that folder's name. Other files (notes, images at the top level) are counted and ignored.
 */
function pick(found: Array<{ file: File; path: string }>): void {
  pickedImages = [];
  ignoredFiles = 0;
  for (const { file, path } of found) {
    const parts = path.split('/').filter((part) => part !== '');
    const isImage = file.type.startsWith('image/');
    if (parts.length < 3 || !isImage || file.name.startsWith('.')) ignoredFiles++;
    else pickedImages.push({ file, className: parts[parts.length - 2] as string });
  }
  const classes = new Set(pickedImages.map((f) => f.className));
  imagesSummary.textContent =
    `${pickedImages.length} images in ${classes.size} class folders` +
    (ignoredFiles > 0 ? ` (${ignoredFiles} other files ignored)` : '');
  (form.elements.namedItem('data') as RadioNodeList).value = 'images';
}

imagesInput.addEventListener('change', () => {
  pick(Array.from(imagesInput.files ?? [], (file) => ({ file, path: file.webkitRelativePath })));
});

function readAllEntries(directory: FileSystemDirectoryEntry): Promise<FileSystemEntry[]> {
  const reader = directory.createReader();
  const entries: FileSystemEntry[] = [];
  return new Promise((resolve, reject) => {
    // readEntries returns at most ~100 entries a call: call until it returns none.
    const next = () =>
      reader.readEntries((batch) => {
        if (batch.length === 0) resolve(entries);
        else {
          entries.push(...batch);
          next();
        }
      }, reject);
    next();
  });
}

async function collectFiles(entry: FileSystemEntry, out: Array<{ file: File; path: string }>) {
  if (entry.isFile) {
    const file = await new Promise<File>((resolve, reject) =>
      (entry as FileSystemFileEntry).file(resolve, reject),
    );
    out.push({ file, path: entry.fullPath });
  } else if (entry.isDirectory) {
    for (const child of await readAllEntries(entry as FileSystemDirectoryEntry)) {
      await collectFiles(child, out);
    }
  }
}

dropZone.addEventListener('dragover', (event) => {
  event.preventDefault();
  dropZone.classList.add('over');
});
dropZone.addEventListener('dragleave', () => dropZone.classList.remove('over'));
dropZone.addEventListener('drop', (event) => {
  event.preventDefault();
  dropZone.classList.remove('over');
  const entries = Array.from(event.dataTransfer?.items ?? [])
    .map((item) => item.webkitGetAsEntry())
    .filter((entry): entry is FileSystemEntry => entry !== null);
  const found: Array<{ file: File; path: string }> = [];
  Promise.all(entries.map((entry) => collectFiles(entry, found)))
    .then(() => pick(found))
    .catch((error: unknown) => {
      formError.textContent = `cannot read the dropped folder: ${String(error)}`;
    });
});

// ---- joining ----------------------------------------------------------------------------------

function dataChoice(): DataChoice {
  const kind = (form.elements.namedItem('data') as RadioNodeList).value;
  if (kind === 'images') {
    if (pickedImages.length === 0) {
      throw new Error(
        ignoredFiles > 0
          ? 'the picked folder has no images in class sub-folders: put each class in its own sub-folder (e.g. digits/3/scan-1.png)'
          : 'pick a folder of images first',
      );
    }
    return { kind: 'images', files: pickedImages };
  }
  if (kind === 'csv') {
    const file = csvInput.files?.[0];
    if (!file) throw new Error('pick a CSV file first');
    return { kind: 'csv', file, featureScale: csv255Input.checked ? 255 : 1 };
  }
  const count = Number(sampleCountInput.value);
  if (!Number.isInteger(count) || count < 1 || count > 1000) {
    throw new Error('the MNIST sample size must be a whole number from 1 to 1000');
  }
  return { kind: 'sample', count };
}

function coordinatorUrl(): string {
  const text = coordinatorInput.value.trim();
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`"${text}" is not an address; write it as https://host:port`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(
      `the coordinator address must start with http:// or https://, got ${url.protocol}`,
    );
  }
  return url.origin;
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  formError.textContent = '';
  let request: Extract<PageToWorker, { type: 'load' }>;
  let connection: { coordinatorUrl: string; token: string };
  try {
    const token = tokenInput.value.trim();
    if (token === '') throw new Error('enter the client token your admin issued');
    connection = { coordinatorUrl: coordinatorUrl(), token };
    request = {
      type: 'load',
      backend: backendSelect.value as BackendPreference,
      data: dataChoice(),
      holdoutFraction: 0.1,
      assetBase: new URL('./', location.href).href,
    };
  } catch (error) {
    formError.textContent = (error as Error).message;
    return;
  }
  form.hidden = true;
  session.hidden = false;
  start(request, connection);
});

// ---- the session view -----------------------------------------------------------------------

let trainingMs = 0;

function log(line: string): void {
  const item = document.createElement('li');
  item.textContent = `${new Date().toLocaleTimeString()} ${line}`;
  logList.prepend(item);
}

function roundRow(round: number): HTMLTableRowElement {
  let row = roundsBody.querySelector<HTMLTableRowElement>(`tr[data-round="${round}"]`);
  if (!row) {
    row = roundsBody.insertRow(0);
    row.dataset['round'] = String(round);
    for (let i = 0; i < 8; i++) row.insertCell();
    (row.cells[0] as HTMLTableCellElement).textContent = String(round);
    (row.cells[1] as HTMLTableCellElement).textContent = 'training';
  }
  return row;
}

function setCells(row: HTMLTableRowElement, values: Record<number, string>): void {
  for (const [index, text] of Object.entries(values)) {
    (row.cells[Number(index)] as HTMLTableCellElement).textContent = text;
  }
}

const percent = (value: number | null) => (value === null ? '-' : `${(value * 100).toFixed(1)}%`);

/** Once replaced or stopped, the session is over: later events (the socket closing) change nothing. */
let over = false;

function show(message: ViewEvent): void {
  if (over) return;
  switch (message.type) {
    case 'backend':
      backendText.textContent = `${message.name} (${message.detail})`;
      document.body.dataset['backend'] = message.name;
      for (const fallback of message.fallbacks) log(`skipped backend ${fallback}`);
      break;
    case 'data':
      dataText.textContent = `${message.description}: ${message.train} for training, ${message.holdout} held out`;
      stateText.textContent = 'connecting';
      break;
    case 'connected':
      stateText.textContent = `connected as ${message.organisation}`;
      document.body.dataset['state'] = 'connected';
      log(`connected (client ${message.clientId})`);
      break;
    case 'disconnected':
      stateText.textContent = `disconnected (${message.reason}); reconnecting`;
      document.body.dataset['state'] = 'disconnected';
      log(`disconnected: ${message.reason}`);
      break;
    case 'round-started':
      roundRow(message.round);
      progressBar.value = 0;
      progressText.textContent = `round ${message.round}: ${message.model}, ${message.epochs} epoch(s), batch ${message.batchSize}`;
      break;
    case 'progress': {
      const done = (message.epoch - 1) * message.batches + message.batch;
      progressBar.max = message.epochs * message.batches;
      progressBar.value = done;
      progressText.textContent = `round ${message.round}: epoch ${message.epoch}/${message.epochs}, batch ${message.batch}/${message.batches}, loss ${message.loss?.toFixed(4) ?? '-'}`;
      break;
    }
    case 'round-finished': {
      trainingMs += message.durationMs;
      timeSpentText.textContent = `${(trainingMs / 1000).toFixed(1)} s`;
      const row = roundRow(message.round);
      row.dataset['outcome'] = message.outcome;
      setCells(row, {
        1: message.outcome === 'sent' ? 'update sent' : `refused: ${message.detail}`,
        2: message.loss?.toFixed(4) ?? '-',
        3: percent(message.accuracy),
        5: String(message.numExamples),
        6: `${(message.durationMs / 1000).toFixed(1)} s`,
        7: String(Math.round(message.samplesPerSecond)),
      });
      log(`round ${message.round}: ${message.detail}`);
      break;
    }
    case 'round-failed': {
      const row = roundRow(message.round);
      row.dataset['outcome'] = 'failed';
      setCells(row, { 1: `failed: ${message.reason}` });
      log(`round ${message.round} failed: ${message.reason}`);
      break;
    }
    case 'evaluated':
      setCells(roundRow(message.round), { 4: percent(message.accuracy) });
      break;
    case 'warning':
      log(message.message);
      break;
    case 'replaced':
      stateText.textContent = 'replaced';
      document.body.dataset['state'] = 'replaced';
      banner.textContent = `This tab no longer takes part: ${message.message} (another tab or device joined with this token). Close this tab, or reload it to take over again.`;
      over = true;
      void stop();
      break;
    case 'fatal':
      stateText.textContent = 'stopped';
      document.body.dataset['state'] = 'failed';
      banner.classList.add('fatal');
      banner.textContent = `${message.code}: ${message.message}`;
      over = true;
      void stop();
      break;
  }
}

/** The session's teardown: closes the connection and the worker (set once they exist). */
let stop: () => Promise<void> = async () => undefined;

function observer(): ClientObserver {
  return {
    connected: (w) =>
      show({
        type: 'connected',
        organisation: w.organisation,
        clientId: w.clientId,
        federationId: w.federationId,
      }),
    disconnected: (reason) => show({ type: 'disconnected', reason }),
    roundStarted: (i) =>
      show({
        type: 'round-started',
        round: i.round,
        model: i.model.name,
        epochs: i.config.epochs,
        batchSize: i.config.batchSize,
      }),
    progress: (p) => show({ type: 'progress', ...p }),
    roundFinished: (r) =>
      show({
        type: 'round-finished',
        round: r.round,
        outcome: r.ack.ok ? 'sent' : 'refused',
        detail: r.ack.ok ? 'update accepted' : `${r.ack.error.code}: ${r.ack.error.message}`,
        loss: r.loss,
        accuracy: r.accuracy,
        numExamples: r.numExamples,
        durationMs: r.durationMs,
        samplesPerSecond: r.samplesPerSecond,
      }),
    roundFailed: (f) => show({ type: 'round-failed', round: f.round, reason: f.reason }),
    evaluated: (e) => show({ type: 'evaluated', ...e }),
    warning: (message) => show({ type: 'warning', message }),
    replaced: (message) => show({ type: 'replaced', message }),
  };
}

function start(
  request: Extract<PageToWorker, { type: 'load' }>,
  connection: { coordinatorUrl: string; token: string },
): void {
  const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
  stop = async () => worker.terminate();
  let backendName = 'unknown';
  const fail = (code: string, message: string) => show({ type: 'fatal', code, message });
  worker.addEventListener('error', (event) => {
    fail('INTERNAL', event.message || 'the training worker failed to start');
  });
  worker.addEventListener('message', (event: MessageEvent<WorkerToPage>) => {
    const message = event.data;
    switch (message.type) {
      case 'backend':
        backendName = message.name;
        show(message);
        break;
      case 'load-failed':
        fail(message.code, message.message);
        break;
      case 'loaded': {
        show({ ...message, type: 'data' });
        const client = new TesseraClient({
          ...connection,
          identity: { name: 'tessera-web-client', version: '0.1.0', runtime: 'browser' },
          backend: backendName,
          trainer: new WorkerTrainer(worker, message.train, message.holdout),
          observer: observer(),
        });
        stop = () => client.close();
        client.connect().catch((error: unknown) => {
          const code = (error as { code?: unknown }).code;
          fail(typeof code === 'string' ? code : 'INTERNAL', (error as Error).message);
        });
        break;
      }
    }
  });
  worker.postMessage(request);
}

readInvitation();
