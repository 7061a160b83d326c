/**
 * Poisoning: 10 clients, 2 of them malicious, every round; accuracy on the MNIST test set
 * after N rounds (2NN: all 10,000 images; CNN: the first 2,000, see MODEL_SETTINGS), for FedAvg and every robust rule of @tessera/aggregation,
 * under each attack, IID and non-IID (McMahan et al.'s shards, 2 per client), for the FedAvg
 * paper's 2NN and CNN. In process: the strategies' beginRound / add / finish directly, no
 * coordinator or sockets (the rules are what is measured, and they are the same code).
 *
 *   npm run bench:poisoning [-- --models fedavg-2nn,fedavg-cnn --partitions iid,shards:2
 *     --rules fedavg,krum --attacks none,sign-flip --rounds 20 --quick --report]
 *
 * Attacks (clients 0 and 1; see poisoning-attacks.ts):
 *   sign-flip   w_g - 10 (w - w_g)        scaled   w_g + 10 (w - w_g)
 *   label-flip  trains on labels 9 - y    noise    w_g + N(0, sigma^2) per coordinate
 * where w is the mean of the round's honest models: the attackers see the honest updates (the
 * usual omniscient threat model) and train nothing themselves, except under label-flip. Under
 * 'none' all 10 clients train honestly. Every client claims the examples it holds, so FedAvg
 * weighs the attackers as it would weigh them honest.
 *
 * Cost: round 1 starts from the same initial model in every run of a model and partition, so
 * the clients' round-1 training is done once and shared by every rule and attack. Later rounds
 * differ from run to run and are trained. One thread (OPENBLAS_NUM_THREADS=1 unless set): the
 * machine is shared.
 *
 * Writes bench/results/poisoning.json (results accumulate across invocations, keyed by model,
 * partition, attack and rule) and bench/results/poisoning.md; --quick writes *-quick.* instead.
 */
// Before initBackend loads @tessera/ml-native (lazily), whose OpenBLAS and oneDNN read these.
process.env['OPENBLAS_NUM_THREADS'] ??= '1';
process.env['OMP_NUM_THREADS'] ??= '1';

import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { createStrategy, minUpdatesFor, type TrainUpdate } from '@tessera/aggregation';
import {
  createRng,
  formatPartitionScheme,
  loadMnist,
  parsePartitionScheme,
  partition,
  toExamples,
} from '@tessera/data';
import {
  createModel,
  evaluateModel,
  getFlatWeights,
  initBackend,
  setFlatWeights,
  type TrainingData,
  type TrainingLoop,
  trainLocal,
} from '@tessera/ml';
import {
  ATTACK_NAMES,
  type AttackName,
  distance,
  flippedLabels,
  gaussianAround,
  meanModel,
  scaledChange,
  signFlipped,
} from './poisoning-attacks.js';
import {
  type ModelSettings,
  poisoningTables,
  type RunResult,
  resultKey,
  sameSettings,
} from './poisoning-results.js';

const CLIENTS = 10;
/** Clients 0 and 1 attack (when an attack is on). */
const MALICIOUS = 2;
const SIGN_FLIP_FACTOR = 10;
const SCALE_FACTOR = 10;
const SEED = 1;

const MODEL_SETTINGS: Record<string, ModelSettings> = {
  'fedavg-2nn': {
    rounds: 10,
    examplesPerClient: 600,
    epochs: 1,
    batchSize: 10,
    learningRate: 0.1,
    noiseSigma: 1,
    // Round 1's median honest change norm here: 3.08 (it shrinks in later rounds).
    clipRadius: 3,
    testImages: 10_000,
  },
  // The 2NN's client settings, 5 rounds (the first shared by every run, see above): the
  // native loop trains a CNN client's 600 examples in 0.5-2 s on this shared 2-core machine,
  // a 40-run grid in about 15 (quiet) to 45 (load ~10) minutes. At 2 rounds of 100 examples,
  // the earlier setting, non-IID scored near chance with no attack (11-15 %). Scored on the
  // first 2,000 test images (about 2 s quiet, a tenth of a run's time).
  'fedavg-cnn': {
    rounds: 5,
    examplesPerClient: 600,
    epochs: 1,
    batchSize: 10,
    learningRate: 0.1,
    noiseSigma: 1,
    // Round 1's median honest change norm here: 3.09 IID, 2.44 non-IID (shards:2).
    clipRadius: 3,
    testImages: 2_000,
  },
};

interface Rule {
  /** The table's row label. */
  label: string;
  strategy: string;
  options: (settings: ModelSettings) => Record<string, unknown>;
  /** Why these options, for f = 2 of n = 10. */
  note: string;
}

/** Every robust rule of the registry (dp-fedavg is a privacy rule, not a robust one), and FedAvg. */
const RULES: Rule[] = [
  { label: 'fedavg', strategy: 'fedavg', options: () => ({}), note: 'no defence' },
  { label: 'fedmedian', strategy: 'fedmedian', options: () => ({}), note: 'coordinate median' },
  {
    label: 'trimmed-mean β=0.2',
    strategy: 'trimmed-mean',
    options: () => ({ beta: 0.2 }),
    note: 'drops floor(0.2 x 10) = 2 values at each end of every coordinate',
  },
  {
    label: 'krum f=2',
    strategy: 'krum',
    options: () => ({ f: 2 }),
    note: 'needs n >= 2f + 3 = 7',
  },
  {
    label: 'multi-krum f=2 m=8',
    strategy: 'multi-krum',
    options: () => ({ f: 2, m: 8 }),
    note: 'averages the m = n - f = 8 best-scored updates',
  },
  {
    label: 'bulyan f=1',
    strategy: 'bulyan',
    options: () => ({ f: 1 }),
    note: 'f = 2 needs n >= 4f + 3 = 11 > 10: run with f = 1, its largest f at n = 10 (assumes one attacker of the two)',
  },
  {
    label: 'centered-clipping τ=r',
    strategy: 'centered-clipping',
    options: (settings) => ({ tau: settings.clipRadius, iterations: 1 }),
    note: 'one iteration; tau = the clip radius r of the model (near an honest change norm)',
  },
  {
    label: 'norm-bounded M=r',
    strategy: 'norm-bounded-fedavg',
    options: (settings) => ({ normBound: settings.clipRadius }),
    note: 'every change clipped to L2 norm r before the weighted mean',
  },
];

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: 'fedavg-2nn,fedavg-cnn' },
    partitions: { type: 'string', default: 'iid,shards:2' },
    rules: { type: 'string' },
    attacks: { type: 'string', default: ATTACK_NAMES.join(',') },
    rounds: { type: 'string' },
    quick: { type: 'boolean', default: false },
    // Trains nothing: prints and writes the tables of what the results file holds.
    report: { type: 'boolean', default: false },
    // Skips the runs the results file already holds (at these settings): several invocations
    // can then share one grid, each taking the cells the others have not reached.
    'skip-done': { type: 'boolean', default: false },
  },
});

const quick = args.quick;
const models = args.report ? [] : args.models.split(',');
const partitions = args.partitions.split(',').map((text) => parsePartitionScheme(text));
const attacks = args.attacks.split(',').map((name) => {
  if (!(ATTACK_NAMES as readonly string[]).includes(name))
    throw new Error(`unknown attack ${name}; attacks: ${ATTACK_NAMES.join(', ')}`);
  return name as AttackName;
});
const rules = args.rules
  ? args.rules.split(',').map((name) => {
      const rule = RULES.find((r) => r.strategy === name);
      if (!rule) throw new Error(`unknown rule ${name}; rules: ${RULES.map((r) => r.strategy)}`);
      return rule;
    })
  : RULES;
const settingsOf = (model: string): ModelSettings => {
  const base = MODEL_SETTINGS[model];
  if (!base) throw new Error(`unknown model ${model}; models: ${Object.keys(MODEL_SETTINGS)}`);
  const quickened = quick ? { ...base, rounds: 2, examplesPerClient: 50 } : base;
  return args.rounds ? { ...quickened, rounds: Number(args.rounds) } : quickened;
};
for (const modelName of models) {
  for (const rule of rules) {
    const needed = minUpdatesFor(rule.strategy, rule.options(settingsOf(modelName)));
    if (needed > CLIENTS) throw new Error(`${rule.label} needs ${needed} updates, has ${CLIENTS}`);
  }
}

const resultsPath = `bench/results/poisoning${quick ? '-quick' : ''}.json`;
const tablePath = `bench/results/poisoning${quick ? '-quick' : ''}.md`;
mkdirSync('bench/results', { recursive: true });

// The native loop (oneDNN, OpenBLAS) where @tessera/ml-native is built; tfjs otherwise.
let backendDetail: string;
try {
  backendDetail = (await initBackend('openblas', { threads: 1 })).detail;
} catch (error) {
  const info = await initBackend('auto', { threads: 1 });
  backendDetail = `${info.detail} (openblas unavailable: ${(error as Error).message})`;
}

const train = loadMnist('train');
const testSplit = loadMnist('test');
const test = toExamples(testSplit);
const testData: TrainingData = { x: test.x, y: test.y, count: test.count };

interface ClientData {
  honest: TrainingData;
  /** The same examples with labels 9 - y (used by a label-flipping attacker). */
  flipped: TrainingData;
  labels: number[];
}

/** The 10 clients' data for a partition: a seeded sample of the training set, split. */
function clientData(scheme: ReturnType<typeof parsePartitionScheme>, perClient: number) {
  const order = new Uint32Array(train.count);
  for (let i = 0; i < order.length; i++) order[i] = i;
  const pool = createRng(SEED)
    .shuffle(order)
    .subarray(0, perClient * CLIENTS);
  const poolLabels = Array.from(pool, (index) => train.labels[index] as number);
  return partition(poolLabels, CLIENTS, scheme, SEED).map((part): ClientData => {
    const examples = toExamples(
      train,
      Array.from(part, (k) => pool[k] as number),
    );
    const honest = { x: examples.x, y: examples.y, count: examples.count };
    return {
      honest,
      flipped: { ...honest, y: flippedLabels(examples.y, 10) },
      labels: [...new Set(examples.y)].sort(),
    };
  });
}

const loops = new Set<TrainingLoop>();
const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
const isFinite32 = (weights: Float32Array) => weights.every((value) => Number.isFinite(value));

const results: Record<string, RunResult> = existsSync(resultsPath)
  ? JSON.parse(readFileSync(resultsPath, 'utf8')).results
  : {};
const started = new Date().toISOString();
/** Keys of the runs this invocation made. */
const measured = new Set<string>();

const cpus = os.cpus();
const machine = (when = 'at the last save') =>
  `${cpus.length} x ${cpus[0]?.model ?? 'unknown CPU'}, load average ${os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(
      ' ',
    )} (${when}), node ${process.version}; ${backendDetail}; loop ${[...loops].join(', ') || 'n/a'}`;

function save(): void {
  // Re-read first: another invocation (another model) may have written meanwhile.
  const earlier = existsSync(resultsPath)
    ? (JSON.parse(readFileSync(resultsPath, 'utf8')).results as Record<string, RunResult>)
    : {};
  // What this invocation measured wins; everything else is as the file has it now.
  const merged = { ...results, ...earlier };
  for (const key of measured) merged[key] = results[key] as RunResult;
  Object.assign(results, merged);
  const document = {
    clients: CLIENTS,
    malicious: MALICIOUS,
    signFlipFactor: SIGN_FLIP_FACTOR,
    scaleFactor: SCALE_FACTOR,
    seed: SEED,
    modelSettings: MODEL_SETTINGS,
    rules: RULES.map((r) => ({ label: r.label, strategy: r.strategy, note: r.note })),
    machine: machine(),
    updatedAt: new Date().toISOString(),
    results: merged,
  };
  // Written aside and renamed: another invocation may read the file at any moment.
  const partial = `${resultsPath}.${process.pid}`;
  writeFileSync(partial, `${JSON.stringify(document, null, 2)}\n`);
  renameSync(partial, resultsPath);
}

console.log(`Started ${started}; ${machine('at the start')}`);
console.log(`Rules (f = ${MALICIOUS} attackers of n = ${CLIENTS}):`);
for (const rule of rules) console.log(`  ${rule.label}: ${rule.note}`);

for (const modelName of models) {
  const settings = settingsOf(modelName);
  const model = createModel(modelName, { seed: SEED });
  const initial = getFlatWeights(model);
  console.log(
    `\n== ${modelName} (${initial.length} parameters): ${settings.rounds} rounds, scored on ${settings.testImages} test images, ${CLIENTS} clients x ${settings.examplesPerClient} examples, E=${settings.epochs}, B=${settings.batchSize}, lr ${settings.learningRate}; attackers: clients 0-${MALICIOUS - 1}; sign-flip x${SIGN_FLIP_FACTOR}, scaled x${SCALE_FACTOR}, noise sigma ${settings.noiseSigma}, clip radius r = ${settings.clipRadius}`,
  );

  /** A client's model after local training from `global` (deterministic: seeded by round). */
  async function trainClient(
    global: Float32Array,
    data: TrainingData,
    client: number,
    round: number,
  ): Promise<Float32Array> {
    setFlatWeights(model, global);
    const result = await trainLocal(model, data, {
      epochs: settings.epochs,
      batchSize: settings.batchSize,
      learningRate: settings.learningRate,
      seed: SEED * 1_000_003 + round * 1_000 + client,
    });
    loops.add(result.loop);
    return getFlatWeights(model);
  }

  for (const scheme of partitions) {
    const partitionName = formatPartitionScheme(scheme);
    const data = clientData(scheme, settings.examplesPerClient);
    if (scheme.kind !== 'iid') {
      console.log(
        `  ${partitionName}: classes per client ${data.map((c, k) => `${k}:${c.labels.join('')}`).join(' ')}`,
      );
    }
    // Round 1 starts from `initial` in every run: train each client (and, flipped, each
    // attacker) once.
    const roundOne = new Map<string, Float32Array>();
    const firstRound = async (client: number, flipped: boolean) => {
      const key = `${client}${flipped ? 'f' : ''}`;
      let weights = roundOne.get(key);
      if (weights === undefined) {
        const set = data[client] as ClientData;
        weights = await trainClient(initial, flipped ? set.flipped : set.honest, client, 1);
        roundOne.set(key, weights);
      }
      return weights;
    };

    for (const attack of attacks) {
      for (const rule of rules) {
        const key = resultKey({
          model: modelName,
          partition: partitionName,
          attack,
          rule: rule.label,
        });
        if (args['skip-done'] && existsSync(resultsPath)) {
          const done = JSON.parse(readFileSync(resultsPath, 'utf8')).results[key] as
            | RunResult
            | undefined;
          if (done !== undefined && sameSettings(done.settings, settings)) continue;
        }
        const options = rule.options(settings);
        const strategy = createStrategy(rule.strategy, options);
        const runStarted = performance.now();
        let global = initial;
        let divergedAtRound: number | null = null;
        let honestChangeNorm = 0;
        for (let round = 1; round <= settings.rounds; round++) {
          const honestClients = attack === 'none' ? CLIENTS : CLIENTS - MALICIOUS;
          const honest: { client: number; weights: Float32Array }[] = [];
          for (let client = CLIENTS - honestClients; client < CLIENTS; client++) {
            const set = data[client] as ClientData;
            const weights =
              round === 1
                ? await firstRound(client, false)
                : await trainClient(global, set.honest, client, round);
            honest.push({ client, weights });
          }
          if (!honest.every((h) => isFinite32(h.weights))) {
            divergedAtRound = round;
            break;
          }
          honestChangeNorm = median(honest.map((h) => distance(h.weights, global)));
          const sent = new Map(honest.map((h) => [h.client, h.weights]));
          if (attack !== 'none') {
            const honestMean = meanModel(honest.map((h) => h.weights));
            for (let client = 0; client < MALICIOUS; client++) {
              const set = data[client] as ClientData;
              sent.set(
                client,
                attack === 'sign-flip'
                  ? signFlipped(global, honestMean, SIGN_FLIP_FACTOR)
                  : attack === 'scaled'
                    ? scaledChange(global, honestMean, SCALE_FACTOR)
                    : attack === 'noise'
                      ? gaussianAround(
                          global,
                          settings.noiseSigma,
                          createRng(SEED * 7919 + round * 100 + client),
                        )
                      : round === 1
                        ? await firstRound(client, true)
                        : await trainClient(global, set.flipped, client, round),
              );
            }
          }
          const aggregator = strategy.beginRound(round, global);
          for (let client = 0; client < CLIENTS; client++) {
            const weights = sent.get(client) as Float32Array;
            if (!isFinite32(weights)) continue; // a diverged label-flipper: nothing to send
            const update: TrainUpdate = {
              clientId: `client-${client}`,
              numExamples: (data[client] as ClientData).honest.count,
              weights,
              metrics: {},
            };
            aggregator.add(update);
          }
          global = aggregator.finish().weights ?? global;
        }
        setFlatWeights(model, global);
        const evaluation = await evaluateModel(model, {
          x: testData.x.subarray(0, settings.testImages * 784),
          y: testData.y.subarray(0, settings.testImages),
          count: settings.testImages,
        });
        const result: RunResult = {
          model: modelName,
          partition: partitionName,
          attack,
          rule: rule.label,
          strategy: rule.strategy,
          options,
          settings,
          rounds: settings.rounds,
          testImages: settings.testImages,
          accuracy: evaluation.accuracy,
          loss: evaluation.loss,
          divergedAtRound,
          honestChangeNorm,
          wallSeconds: (performance.now() - runStarted) / 1000,
        };
        results[resultKey(result)] = result;
        measured.add(resultKey(result));
        save();
        console.log(
          `  ${partitionName.padEnd(9)} ${attack.padEnd(10)} ${rule.label.padEnd(22)} accuracy ${(result.accuracy * 100).toFixed(2).padStart(6)} %${divergedAtRound ? ` (diverged in round ${divergedAtRound})` : ''}  honest |Δ| ${honestChangeNorm.toFixed(2)}  ${result.wallSeconds.toFixed(1)} s`,
        );
      }
    }
  }
  model.dispose();
}

// --report measured nothing: it leaves the file, and the machine line of the runs, as they are.
if (measured.size > 0) save();
const machineLine =
  measured.size > 0 || !existsSync(resultsPath)
    ? machine()
    : String(JSON.parse(readFileSync(resultsPath, 'utf8')).machine);
const table = poisoningTables(Object.values(results), {
  models: Object.keys(MODEL_SETTINGS),
  ruleLabels: RULES.map((r) => r.label),
  clients: CLIENTS,
});
writeFileSync(tablePath, `${table}\nMachine: ${machineLine}\n`);
console.log(`\n${table}\nMachine: ${machineLine}\nstarted ${started}; wrote ${tablePath}`);
