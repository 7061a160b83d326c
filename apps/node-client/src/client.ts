// The client core is shared with the browser client (@tessera/client); this module keeps the
// node-client's public names where they were.
export {
  type ClientIdentity,
  type ClientObserver,
  type ClientOptions,
  TesseraClient,
  TfjsTrainer,
  type TrainingProgress,
} from '@tessera/client';

/** How the Node client introduces itself to the coordinator. */
export const NODE_CLIENT_IDENTITY = {
  name: 'tessera-node-client',
  version: '0.1.0',
  runtime: 'node',
} as const;
