import type {
  EvaluateInstruction,
  RoundClosed,
  SecAggServerFrame,
  StatisticsInstruction,
  TrainInstruction,
} from '@tessera/protocol';
import type { Transport } from '../transport.js';

/** One message the engine sent to one client, in sending order. */
export type SentMessage =
  | { event: 'train'; clientId: string; payload: TrainInstruction }
  | { event: 'evaluate'; clientId: string; payload: EvaluateInstruction }
  | { event: 'statistics'; clientId: string; payload: StatisticsInstruction }
  | { event: 'round-closed'; clientId: string; payload: RoundClosed }
  | { event: 'secagg'; clientId: string; payload: SecAggServerFrame };

export type MessageHandler = (message: SentMessage) => void;

/**
 * The `Transport` of unit tests: a real implementation without sockets. Every message is
 * recorded (`sent`) and delivered to the handler connected for its client on a later turn of
 * the event loop (setImmediate), as a network would: a handler that answers at once never
 * re-enters the engine while it is still sending.
 */
export class InMemoryTransport implements Transport {
  readonly sent: SentMessage[] = [];
  private readonly handlers = new Map<string, MessageHandler>();

  /** Routes the messages for `clientId` to `handler` (replacing any earlier one). */
  connect(clientId: string, handler: MessageHandler): void {
    this.handlers.set(clientId, handler);
  }

  disconnect(clientId: string): void {
    this.handlers.delete(clientId);
  }

  /** What was sent to one client, of one event. */
  sentTo<E extends SentMessage['event']>(
    clientId: string,
    event: E,
  ): Extract<SentMessage, { event: E }>[] {
    return this.sent.filter(
      (message): message is Extract<SentMessage, { event: E }> =>
        message.clientId === clientId && message.event === event,
    );
  }

  sendTrain(clientIds: readonly string[], payload: TrainInstruction): void {
    for (const clientId of clientIds) this.deliver({ event: 'train', clientId, payload });
  }

  sendEvaluate(clientIds: readonly string[], payload: EvaluateInstruction): void {
    for (const clientId of clientIds) this.deliver({ event: 'evaluate', clientId, payload });
  }

  sendStatistics(clientIds: readonly string[], payload: StatisticsInstruction): void {
    for (const clientId of clientIds) this.deliver({ event: 'statistics', clientId, payload });
  }

  sendRoundClosed(clientIds: readonly string[], payload: RoundClosed): void {
    for (const clientId of clientIds) this.deliver({ event: 'round-closed', clientId, payload });
  }

  sendSecAgg(clientIds: readonly string[], payload: SecAggServerFrame): void {
    for (const clientId of clientIds) this.deliver({ event: 'secagg', clientId, payload });
  }

  private deliver(message: SentMessage): void {
    this.sent.push(message);
    const handler = this.handlers.get(message.clientId);
    if (handler) setImmediate(() => handler(message));
  }
}
