import { pack, unpack } from 'msgpackr';
import type { RedisClient } from './redis.js';

/** A frame for some of the connections one other process holds. */
export interface DeliveredFrame {
  /** The Socket.IO event (`train`, `evaluate`, `round-closed`, ...). */
  event: string;
  /** The event's arguments, as the sender would have emitted them (bytes stay bytes). */
  args: unknown[];
  /** The recipients' connection ids, all held by the receiving process. */
  connections: string[];
}

export interface FrameDeliveryOptions {
  commands: RedisClient;
  subscriber: RedisClient;
  prefix: string;
  /** This process's id (its lease owner name): it hears what is sent to it. */
  processId: string;
}

/**
 * Frames a run's owner sends to clients another process holds. Through the Socket.IO Redis
 * adapter such a frame reaches the other process as one broadcast, which that process writes
 * to every recipient in one go, unpaced: a round's `train` (the model, 800 KB for the 2NN) to
 * thousands of its clients held its loop for seconds, so its clients' pings and updates
 * waited. Here the owner publishes the frame once per process on that process's channel
 * (msgpack: the model stays raw bytes), and the receiver sends it out to its own connections
 * paced, as it does its own frames (paced-sends.ts). One publisher's messages arrive in order,
 * so a client still gets its frames in the order they were sent.
 */
export class FrameDelivery {
  private readonly channel: string;
  private readonly onMessage: (message: Buffer) => void;

  private constructor(
    private readonly options: FrameDeliveryOptions,
    deliver: (frame: DeliveredFrame) => void,
  ) {
    this.channel = this.channelOf(options.processId);
    this.onMessage = (message) => deliver(unpack(message) as DeliveredFrame);
  }

  /** Listens for frames sent to this process; `deliver` sends each to its connections. */
  static async start(
    options: FrameDeliveryOptions,
    deliver: (frame: DeliveredFrame) => void,
  ): Promise<FrameDelivery> {
    const delivery = new FrameDelivery(options, deliver);
    await options.subscriber.subscribe(delivery.channel, delivery.onMessage, true);
    return delivery;
  }

  private channelOf(processId: string): string {
    return `${this.options.prefix}frames:${processId}`;
  }

  /**
   * Publishes the frame to the process that holds its connections; false when no process
   * listens on its channel (it is gone, and its connections with it).
   */
  async send(processId: string, frame: DeliveredFrame): Promise<boolean> {
    const receivers = await this.options.commands.publish(
      this.channelOf(processId),
      pack(frame satisfies DeliveredFrame),
    );
    return receivers > 0;
  }

  async close(): Promise<void> {
    if (!this.options.subscriber.isReady) return;
    await this.options.subscriber.unsubscribe(this.channel, this.onMessage, true).catch(() => {});
  }
}
