/// <reference lib="dom" />
import {
  type ClientObserver,
  type EvaluateRequest,
  type LocalTrainer,
  TesseraClient,
  type TrainerProgress,
  type TrainRequest,
} from '@tessera/client/core';
import { BUILTIN_TASK_FOR_MODEL, type TaskDefinition } from '@tessera/tasks';
import { describeAdapter } from './adapter.js';
import { openControlVariates } from './control-variate-store.js';
import {
  BACKEND_PREFERENCES,
  type BackendPreference,
  type DataChoice,
  type LabelledFile,
  type PageToWorker,
  type ViewEvent,
  type WorkerToPage,
} from './messages.js';
import {
  type AdapterFacts,
  BACKEND_LABELS,
  type BrowserBackendName,
  explainPick,
  PROBE_CANDIDATES,
  type ProbeResult,
  pickBackend,
} from './probe.js';
import { openSecAggInWorker } from './worker-secagg.js';
import { WorkerTrainer } from './worker-trainer.js';

/** The zoo models the probe worker can time (the built-in MNIST tasks' models). */
const ZOO_MODELS: ReadonlySet<string> = new Set(Object.keys(BUILTIN_TASK_FOR_MODEL));

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
const taskFileInput = element<HTMLInputElement>('task-file');
const taskImagesInput = element<HTMLInputElement>('task-images');
const taskImagesSummary = element<HTMLSpanElement>('task-images-summary');
const checkTaskInput = element<HTMLInputElement>('check-task');
const backendSelect = element<HTMLSelectElement>('backend');
const formError = element<HTMLParagraphElement>('form-error');
const session = element<HTMLElement>('session');
const banner = element<HTMLParagraphElement>('banner');
const stateText = element<HTMLElement>('state');
const backendText = element<HTMLElement>('backend-name');
const dataText = element<HTMLElement>('data-description');
const dataCheckText = element<HTMLElement>('data-check');
const progressBar = element<HTMLProgressElement>('progress-bar');
const progressText = element<HTMLElement>('progress');
const timeSpentText = element<HTMLElement>('time-spent');
const roundsBody = element<HTMLTableElement>('rounds').tBodies[0] as HTMLTableSectionElement;
const logList = element<HTMLOListElement>('log');
const backendWhyText = element<HTMLElement>('backend-why');
const backendSwitch = element<HTMLSelectElement>('backend-switch');
const runText = element<HTMLElement>('run-state');
const leaveButton = element<HTMLButtonElement>('leave');

/**
 * The coordinator does not tell clients that a run ended: after this long without a round the
 * page says the run has probably finished (the Node client prints its summary at the same point).
 * ?idle-seconds=N changes it (tests use it).
 */
const IDLE_MS = 1000 * (Number(new URLSearchParams(location.search).get('idle-seconds')) || 60);

/** What this tab contributed in one round: the global model it trained from, and its result. */
interface KeptContribution {
  runId: string;
  round: number;
  global: Float32Array;
  weights: Float32Array;
  numExamples: number;
}

/**
 * ?keep-contributions: the page keeps each round's contribution in window.tesseraContributions,
 * as the Node client's --keep-contributions keeps it in files, so that a test can check a
 * secure-aggregation sum against plain FedAvg. Only this tab's own numbers, which its user could
 * compute from the data they picked; nothing of it is sent anywhere.
 */
const keptContributions: KeptContribution[] | undefined = new URLSearchParams(location.search).has(
  'keep-contributions',
)
  ? []
  : undefined;
if (keptContributions !== undefined) {
  (window as unknown as { tesseraContributions: KeptContribution[] }).tesseraContributions =
    keptContributions;
}

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

/** Images picked for the MNIST models (a digit per folder) or for the run's image task. */
interface PickedFolder {
  kind: 'images' | 'task-images';
  summary: HTMLElement;
  images: LabelledFile[];
  ignored: number;
}
const mnistFolder: PickedFolder = {
  kind: 'images',
  summary: imagesSummary,
  images: [],
  ignored: 0,
};
const taskFolder: PickedFolder = {
  kind: 'task-images',
  summary: taskImagesSummary,
  images: [],
  ignored: 0,
};

/**
 * Keeps the images that sit in a class folder (<picked folder>/<class>/<image>); the class is
 * that folder's name. Other files (notes, images at the top level) are counted and ignored.
 */
function pick(found: Array<{ file: File; path: string }>, into: PickedFolder): void {
  into.images = [];
  into.ignored = 0;
  for (const { file, path } of found) {
    const parts = path.split('/').filter((part) => part !== '');
    const isImage = file.type.startsWith('image/');
    if (parts.length < 3 || !isImage || file.name.startsWith('.')) into.ignored++;
    else into.images.push({ file, className: parts[parts.length - 2] as string, path });
  }
  const classes = new Set(into.images.map((f) => f.className));
  into.summary.textContent =
    `${into.images.length} images in ${classes.size} class folders` +
    (into.ignored > 0 ? ` (${into.ignored} other files ignored)` : '');
  (form.elements.namedItem('data') as RadioNodeList).value = into.kind;
}

const pickedFiles = (input: HTMLInputElement) =>
  Array.from(input.files ?? [], (file) => ({ file, path: file.webkitRelativePath }));
imagesInput.addEventListener('change', () => pick(pickedFiles(imagesInput), mnistFolder));
taskImagesInput.addEventListener('change', () => pick(pickedFiles(taskImagesInput), taskFolder));

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
    .then(() => pick(found, mnistFolder))
    .catch((error: unknown) => {
      formError.textContent = `cannot read the dropped folder: ${String(error)}`;
    });
});

// ---- joining ----------------------------------------------------------------------------------

function dataChoice(): DataChoice {
  const kind = (form.elements.namedItem('data') as RadioNodeList).value;
  if (kind === 'images') {
    if (mnistFolder.images.length === 0) {
      throw new Error(
        mnistFolder.ignored > 0
          ? 'the picked folder has no images in class sub-folders: put each class in its own sub-folder (e.g. digits/3/scan-1.png)'
          : 'pick a folder of images first',
      );
    }
    return { kind: 'images', files: mnistFolder.images };
  }
  if (kind === 'task-images') {
    if (taskFolder.images.length === 0) {
      throw new Error(
        taskFolder.ignored > 0
          ? 'the picked folder has no images in class sub-folders: put each class in its own sub-folder (e.g. scans/benign/scan-1.png)'
          : "pick the folder of images for the run's task first",
      );
    }
    return { kind: 'task-images', files: taskFolder.images };
  }
  if (kind === 'task-file') {
    const file = taskFileInput.files?.[0];
    if (!file) throw new Error("pick the data file for the run's task first");
    return { kind: 'task-file', file };
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
    const data = dataChoice();
    const checkTask = checkTaskInput.files?.[0];
    if (checkTask !== undefined && data.kind !== 'task-file' && data.kind !== 'task-images') {
      throw new Error(
        "a task definition to check against goes with a data file or an image folder for the run's task",
      );
    }
    request = {
      type: 'load',
      backend: backendSelect.value as BackendPreference,
      data,
      holdoutFraction: 0.1,
      assetBase: new URL('./', location.href).href,
      ...(checkTask === undefined ? {} : { checkTask }),
    };
  } catch (error) {
    formError.textContent = (error as Error).message;
    return;
  }
  form.hidden = true;
  session.hidden = false;
  clearView();
  over = false;
  leaveButton.hidden = false;
  start(request, connection);
});

// ---- the session view -----------------------------------------------------------------------

let trainingMs = 0;
let idleTimer: ReturnType<typeof setTimeout> | undefined;

function clearView(): void {
  trainingMs = 0;
  timeSpentText.textContent = '0.0 s';
  roundsBody.replaceChildren();
  logList.replaceChildren();
  banner.textContent = '';
  banner.classList.remove('fatal');
  stateText.textContent = 'starting';
  backendText.textContent = '-';
  backendWhyText.textContent = '';
  dataText.textContent = '-';
  runText.textContent = 'waiting for a round';
  progressBar.value = 0;
  progressText.textContent = 'waiting for a round';
  backendSwitch.disabled = true;
  delete document.body.dataset['backend'];
  delete document.body.dataset['run'];
}

/** After a round's work: if no new round comes within IDLE_MS, say that the run looks finished. */
function armIdleTimer(): void {
  clearTimeout(idleTimer);
  const generation = currentGeneration;
  idleTimer = setTimeout(() => {
    if (generation === currentGeneration) show({ type: 'run-idle', seconds: IDLE_MS / 1000 });
  }, IDLE_MS);
}

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

/**
 * Each Join is a session with its own number; Leave or a fatal end moves past it, so that what
 * a finished session's connection and worker still report (a socket closing) changes nothing.
 */
let currentGeneration = 0;
let over = false;

function show(message: ViewEvent): void {
  if (over) return;
  switch (message.type) {
    case 'backend':
      backendText.textContent = `${message.name} (${message.detail})`;
      document.body.dataset['backend'] = message.name;
      backendSwitch.value = message.name;
      backendSwitch.disabled = false;
      for (const fallback of message.fallbacks) log(`skipped backend ${fallback}`);
      break;
    case 'probing':
      backendText.textContent = `measuring ${PROBE_CANDIDATES.map((b) => BACKEND_LABELS[b]).join(', ')} on ${message.model}…`;
      log(`measuring the backends on ${message.model}`);
      break;
    case 'backend-chosen':
      backendText.textContent = `${message.name} (${message.detail})`;
      backendWhyText.textContent = message.why;
      document.body.dataset['backend'] = message.name;
      backendSwitch.value = message.name;
      backendSwitch.disabled = false;
      log(`backend ${message.name}: ${message.why}`);
      break;
    case 'control-variates':
      document.body.dataset['controlVariates'] = message.fallback === null ? 'indexeddb' : 'memory';
      log(
        message.fallback === null
          ? `SCAFFOLD control variates are kept ${message.where}`
          : `SCAFFOLD control variates are kept ${message.where}: IndexedDB is not available (${message.fallback})`,
      );
      break;
    case 'run-idle':
      runText.textContent = `no round for ${message.seconds} s: the run has probably finished (the coordinator does not announce the end of a run)`;
      document.body.dataset['run'] = 'idle';
      log(runText.textContent);
      break;
    case 'data':
      dataText.textContent = `${message.description}: ${message.train} for training, ${message.holdout} held out`;
      dataCheckText.textContent = message.check?.join('\n') ?? 'not checked before joining';
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
      clearTimeout(idleTimer);
      runText.textContent = `round ${message.round} in progress`;
      delete document.body.dataset['run'];
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
      runText.textContent = `round ${message.round} done; waiting for the next`;
      armIdleTimer();
      break;
    }
    case 'round-failed': {
      const row = roundRow(message.round);
      row.dataset['outcome'] = 'failed';
      setCells(row, { 1: `failed: ${message.reason}` });
      log(`round ${message.round} failed: ${message.reason}`);
      armIdleTimer();
      break;
    }
    case 'evaluated':
      setCells(roundRow(message.round), { 4: percent(message.accuracy) });
      armIdleTimer();
      break;
    case 'warning':
      log(message.message);
      break;
    case 'replaced':
      stateText.textContent = 'replaced';
      document.body.dataset['state'] = 'replaced';
      banner.textContent = `This tab no longer takes part: ${message.message} (another tab or device joined with this token). Close this tab, or press Join to take over again.`;
      end();
      break;
    case 'fatal':
      stateText.textContent = 'stopped';
      document.body.dataset['state'] = 'failed';
      banner.classList.add('fatal');
      banner.textContent = `${message.code}: ${message.message}`;
      end();
      break;
  }
}

/** The session is over (replaced, refused): later events change nothing; Join is offered again. */
function end(): void {
  over = true;
  currentGeneration++;
  clearTimeout(idleTimer);
  leaveButton.hidden = true;
  backendSwitch.disabled = true;
  form.hidden = false;
  void stop();
}

leaveButton.addEventListener('click', () => {
  leaveButton.disabled = true;
  stateText.textContent = 'leaving';
  const leaving = stop();
  over = true;
  currentGeneration++;
  clearTimeout(idleTimer);
  backendSwitch.disabled = true;
  leaving
    .catch((error: unknown) => log(`leaving: ${(error as Error).message}`))
    .finally(() => {
      stateText.textContent = 'left: this tab no longer takes part; press Join to take part again';
      document.body.dataset['state'] = 'left';
      leaveButton.hidden = true;
      leaveButton.disabled = false;
      form.hidden = false;
    });
});

/** The user's pick in the session view: the worker switches before its next computation. */
let switchBackend: (name: BrowserBackendName) => void = () => undefined;
backendSwitch.addEventListener('change', () => {
  switchBackend(backendSwitch.value as BrowserBackendName);
});

/** The session's teardown: closes the connection and the worker (set once they exist). */
let stop: () => Promise<void> = async () => undefined;

function observer(show: (message: ViewEvent) => void): ClientObserver {
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
        epochs: i.config.localEpochs,
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
    contributed: (c) =>
      keptContributions?.push({
        runId: c.runId,
        round: c.round,
        global: c.global.slice(),
        weights: c.weights.slice(),
        numExamples: c.numExamples,
      }),
    warning: (message) => show({ type: 'warning', message }),
    replaced: (message) => show({ type: 'replaced', message }),
  };
}

/** How long one candidate may take to start and finish its probe before it is stopped. */
const PROBE_CAP_MS = 8_000;
/** Timed steps per candidate, after one warm-up step. */
const PROBE_STEPS = 8;

/**
 * Probes one backend in a worker of its own, so that a candidate that blocks (a long shader
 * compilation, a driver that hangs) is terminated at the cap instead of holding up the page.
 */
function probeOne(
  backend: BrowserBackendName,
  model: string,
  batchSize: number,
  facts: AdapterFacts,
  signal: AbortSignal,
): Promise<ProbeResult> {
  const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
  return new Promise<ProbeResult>((resolve) => {
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve({ backend, status: 'failed', reason: 'abandoned: the page left', ...facts });
    });
    const timer = setTimeout(
      () => resolve({ backend, status: 'timed-out', capMs: PROBE_CAP_MS, ...facts }),
      PROBE_CAP_MS,
    );
    worker.addEventListener('message', (event: MessageEvent<WorkerToPage>) => {
      if (event.data.type === 'probed') {
        clearTimeout(timer);
        resolve({ ...event.data.result, ...facts });
      }
    });
    worker.addEventListener('error', (event) => {
      clearTimeout(timer);
      const reason = event.message || 'the probe worker failed';
      resolve({ backend, status: 'failed', reason, ...facts });
    });
    const probe: PageToWorker = { type: 'probe', backend, model, batchSize, steps: PROBE_STEPS };
    worker.postMessage(probe);
  }).finally(() => worker.terminate());
}

/**
 * The page's trainer: the worker's, with the backend chosen first. With 'auto' the first round's
 * model (the task's) is timed on each candidate (one after the other, so they do not compete for
 * the cores) and the fastest is started; the user can switch at any time after.
 */
class ChoosingTrainer implements LocalTrainer {
  private chosen: Promise<void> | null;
  private measured: ProbeResult[] = [];
  /** Leave stops a probe at once rather than after every candidate had its turn. */
  private readonly leaving = new AbortController();

  constructor(
    private readonly inner: WorkerTrainer,
    preferenceStarted: boolean,
    private readonly generation: number,
  ) {
    this.chosen = preferenceStarted ? Promise.resolve() : null;
  }

  get numExamples(): number {
    return this.inner.numExamples;
  }

  get numHoldout(): number | undefined {
    return this.inner.numHoldout;
  }

  get supportedSettings() {
    return this.inner.supportedSettings;
  }

  async train(request: TrainRequest, onProgress: (progress: TrainerProgress) => void) {
    await this.choose(request.model.name, request.config.batchSize);
    return this.inner.train(request, onProgress);
  }

  async evaluate(request: EvaluateRequest) {
    await this.choose(request.model.name, request.batchSize);
    return this.inner.evaluate(request);
  }

  /** The statistics round counts and sums rows: no model, so no backend to choose first. */
  statistics(task: TaskDefinition) {
    return this.inner.statistics(task);
  }

  dispose(): void {
    this.inner.dispose();
  }

  /** The page is leaving: a probe in progress stops now (its round is abandoned anyway). */
  abandon(): void {
    this.leaving.abort();
  }

  /** The user's choice: the worker starts it before its next computation. */
  switchTo(name: BrowserBackendName): void {
    this.chosen = (this.chosen ?? Promise.resolve()).then(async () => {
      const started = await this.inner.useBackend(name);
      const measured = this.measured.length > 0 ? `; measured: ${explainPick(this.measured)}` : '';
      this.report({ ...started, why: `chosen by you${measured}` });
    });
  }

  private choose(model: string, batchSize: number): Promise<void> {
    this.chosen ??= ZOO_MODELS.has(model)
      ? this.probe(model, batchSize)
      : this.startWithoutProbe(model);
    // A failed choice is retried at the next round rather than remembered.
    return this.chosen.catch((error: unknown) => {
      this.chosen = null;
      throw error;
    });
  }

  private async probe(model: string, batchSize: number): Promise<void> {
    if (this.generation === currentGeneration) show({ type: 'probing', model });
    // Read every device before timing any: GPU work a stopped probe left queued (SwiftShader
    // runs it in the browser's GPU process) can delay the next candidate's context by seconds.
    const devices = await Promise.all(
      PROBE_CANDIDATES.map((backend) =>
        describeAdapter(backend).catch(() => ({ adapter: null, software: false })),
      ),
    );
    const results: ProbeResult[] = [];
    for (const [index, backend] of PROBE_CANDIDATES.entries()) {
      const facts = devices[index] ?? { adapter: null, software: false };
      results.push(await probeOne(backend, model, batchSize, facts, this.leaving.signal));
      if (this.leaving.signal.aborted) throw new Error('left before a backend was chosen');
    }
    this.measured = results;
    const pick = pickBackend(results);
    if (pick === null) {
      throw new Error(`no backend could train ${model} here: ${explainPick(results)}`);
    }
    const started = await this.inner.useBackend(pick);
    this.report({ ...started, why: `fastest measured on ${model}: ${explainPick(results)}` });
  }

  /**
   * A task's own model: the probe worker times zoo models only, so WebAssembly, which trains
   * every layer tfjs has on the CPU in every browser, is started without a measurement (the
   * user can switch after). The tabular and text models of tasks are small enough for it.
   */
  private async startWithoutProbe(model: string): Promise<void> {
    const started = await this.inner.useBackend('wasm');
    this.report({
      ...started,
      why: `${model} is a task's own model, not measured: WebAssembly trains it anywhere`,
    });
  }

  private report(chosen: { name: string; detail: string; why: string }): void {
    if (this.generation === currentGeneration) show({ type: 'backend-chosen', ...chosen });
  }
}

function start(
  request: Extract<PageToWorker, { type: 'load' }>,
  connection: { coordinatorUrl: string; token: string },
): void {
  const generation = currentGeneration;
  const current = (message: ViewEvent) => {
    if (generation === currentGeneration) show(message);
  };
  const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
  stop = async () => worker.terminate();
  switchBackend = () => undefined;
  // With 'auto' the backend is measured at the first round; the hello says so.
  let backendName = request.backend === 'auto' ? 'auto' : 'unknown';
  const fail = (code: string, message: string) => current({ type: 'fatal', code, message });
  worker.addEventListener('error', (event) => {
    fail('INTERNAL', event.message || 'the training worker failed to start');
  });
  worker.addEventListener('message', (event: MessageEvent<WorkerToPage>) => {
    const message = event.data;
    switch (message.type) {
      case 'backend':
        backendName = message.name;
        current(message);
        break;
      case 'load-failed':
        if (message.check !== undefined) dataCheckText.textContent = message.check.join('\n');
        fail(message.code, message.message);
        break;
      case 'loaded': {
        current({ ...message, type: 'data' });
        const trainer = new ChoosingTrainer(
          new WorkerTrainer(worker, message.train, message.holdout),
          request.backend !== 'auto',
          generation,
        );
        switchBackend = (name) => trainer.switchTo(name);
        // SCAFFOLD's c_i per (coordinator origin, run), kept across reloads where IndexedDB is.
        void openControlVariates(new URL(connection.coordinatorUrl).origin).then(
          ({ store, fallback }) => {
            if (generation !== currentGeneration) return;
            current({ type: 'control-variates', where: store.where, fallback });
            const client = new TesseraClient({
              ...connection,
              identity: { name: 'tessera-web-client', version: '0.1.0', runtime: 'browser' },
              backend: backendName,
              trainer,
              observer: observer(current),
              controlVariates: store,
              // A secure aggregation's masking runs in the training worker, off the page's thread.
              openSecAgg: openSecAggInWorker(worker, (line) =>
                current({ type: 'warning', message: line }),
              ),
            });
            stop = () => {
              trainer.abandon();
              return client.close();
            };
            client.connect().catch((error: unknown) => {
              const code = (error as { code?: unknown }).code;
              fail(typeof code === 'string' ? code : 'INTERNAL', (error as Error).message);
            });
          },
        );
        break;
      }
    }
  });
  worker.postMessage(request);
}

readInvitation();
