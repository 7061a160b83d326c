import type { WireError } from './errors.js';
import type {
  Ack,
  EvaluateInstruction,
  RoundClosed,
  StatisticsInstruction,
  TaskAck,
  TrainInstruction,
  Welcome,
} from './messages.js';
import type { SecAggServerFrame } from './secagg.js';

/**
 * Typed Socket.IO event maps, shared by the coordinator (`Server<ClientToServerEvents,
 * ServerToClientEvents>`) and every client (`Socket<ServerToClientEvents, ClientToServerEvents>`).
 * Client frames are typed `unknown` on purpose: the coordinator must validate them.
 */
export interface ServerToClientEvents {
  welcome: (welcome: Welcome) => void;
  train: (instruction: TrainInstruction) => void;
  evaluate: (instruction: EvaluateInstruction) => void;
  /** The federated statistics round of a run (docs/protocol.md §5.10). */
  statistics: (instruction: StatisticsInstruction) => void;
  'round-closed': (notice: RoundClosed) => void;
  /** The coordinator's messages of a secure-aggregation round (docs/protocol.md §5.11). */
  secagg: (frame: SecAggServerFrame) => void;
  /** A frame of this client was refused and could not be answered through an ack. */
  rejected: (error: WireError) => void;
}

export interface ClientToServerEvents {
  update: (reply: unknown, ack?: (ack: Ack) => void) => void;
  evaluation: (reply: unknown, ack?: (ack: Ack) => void) => void;
  progress: (progress: unknown) => void;
  /** The answer to a `statistics` instruction (docs/protocol.md §5.10). */
  statistics: (reply: unknown, ack?: (ack: Ack) => void) => void;
  /** Asks for a task's definition by sha256 (docs/protocol.md §5.9). */
  task: (request: unknown, ack?: (ack: TaskAck) => void) => void;
  /** A client's message of a secure-aggregation round (docs/protocol.md §5.11). */
  secagg: (frame: unknown, ack?: (ack: Ack) => void) => void;
  /** Synthesised by the parser (see REJECTED_FRAME_EVENT); a peer sending it is ignored. */
  'tessera:rejected-frame': (info: unknown, ack?: (ack: Ack) => void) => void;
}

/** Event names the coordinator accepts from clients. */
export const CLIENT_EVENTS = [
  'update',
  'evaluation',
  'progress',
  'task',
  'statistics',
  'secagg',
] as const;

/**
 * Emitted by the parser, never by a peer, for a frame that could not be decoded or was too large.
 * Carries the frame's ack id where it could be read, so the sender still gets an answer.
 */
export const REJECTED_FRAME_EVENT = 'tessera:rejected-frame';
