import type {
  EvaluateInstruction,
  RoundClosed,
  SecAggServerFrame,
  StatisticsInstruction,
  TrainInstruction,
} from '@tessera/protocol';

/**
 * What the round engine needs from the network, and nothing more: Socket.IO in production,
 * an in-memory implementation in unit tests. Broadcasts take a list of clients so the transport
 * can encode a payload once and send the same bytes to every recipient.
 */
export interface Transport {
  sendTrain(clientIds: readonly string[], instruction: TrainInstruction): void;
  sendEvaluate(clientIds: readonly string[], instruction: EvaluateInstruction): void;
  sendStatistics(clientIds: readonly string[], instruction: StatisticsInstruction): void;
  sendRoundClosed(clientIds: readonly string[], notice: RoundClosed): void;
  /** A secure-aggregation step's message (docs/protocol.md §5.11). */
  sendSecAgg(clientIds: readonly string[], frame: SecAggServerFrame): void;
}
