import type { Examples } from '@tessera/data';
import { TesseraClient as CoreClient, type CoreClientOptions } from './client.js';
import { TfjsTrainer } from './tfjs-trainer.js';

export * from './core.js';
export { TfjsTrainer, type TfjsTrainerOptions } from './tfjs-trainer.js';

/** Either a trainer, or the examples to train on in this thread with tfjs. */
export type ClientOptions =
  | CoreClientOptions
  | (Omit<CoreClientOptions, 'trainer'> & {
      /** The client's training examples; they never leave this process. */
      train: Examples;
      /** Held-out examples for federated evaluation; null to decline evaluation. */
      holdout: Examples | null;
    });

/** The client with local training in this thread (TfjsTrainer) unless given another trainer. */
export class TesseraClient extends CoreClient {
  constructor(options: ClientOptions) {
    super(
      'trainer' in options
        ? options
        : { ...options, trainer: new TfjsTrainer(options.train, options.holdout) },
    );
  }
}
