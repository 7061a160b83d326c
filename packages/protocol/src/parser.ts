import { Emitter } from '@socket.io/component-emitter';
import { Packr } from 'msgpackr';
import { ErrorCode } from './errors.js';
import { REJECTED_FRAME_EVENT } from './events.js';
import { DEFAULT_MAX_FRAME_BYTES, PEER_FRAME_LIMITS, type ScanLimits } from './limits.js';
import { scanMsgpack } from './msgpack-scan.js';

/**
 * A Socket.IO parser that carries every packet as one MessagePack document instead of JSON plus
 * binary attachments. Weights are `bin` values inside it, so a model update is one binary
 * WebSocket frame with no base64 and no JSON number arrays. Plug it into both ends:
 * `new Server({ parser: createMsgpackParser() })` and `io(url, { parser: createMsgpackParser() })`.
 *
 * The packet document is the map `{ type, nsp, data?, id? }` of socket.io-parser's `Packet`
 * (docs/protocol.md). Plain MessagePack only (no msgpackr records or extensions), so any
 * MessagePack library can speak it.
 */

/** Socket.IO packet types (socket.io-parser's PacketType, protocol 5). */
export const PacketType = {
  CONNECT: 0,
  DISCONNECT: 1,
  EVENT: 2,
  ACK: 3,
  CONNECT_ERROR: 4,
  BINARY_EVENT: 5,
  BINARY_ACK: 6,
} as const;

export interface Packet {
  type: number;
  nsp: string;
  data?: unknown;
  id?: number;
}

export interface MsgpackParserOptions {
  /**
   * Frames larger than this are not delivered: they become a REJECTED_FRAME_EVENT (with the
   * frame's ack id) so the coordinator can answer PAYLOAD_TOO_LARGE. The transport's own limit
   * (Socket.IO `maxHttpBufferSize`) must be larger, or such frames close the connection instead.
   * On a server with `preAuthMaxFrameBytes`, this is the default limit `authenticate` lifts to.
   */
  maxFrameBytes?: number;
  /**
   * Server side: every new connection's decoder starts unauthenticated and refuses, without
   * decoding them, frames over this many bytes, until `authenticate` is called on it. Unset
   * (clients): no such phase.
   */
  preAuthMaxFrameBytes?: number;
  /** Structural limits of the pre-scan run before every decode (default PEER_FRAME_LIMITS). */
  scanLimits?: ScanLimits;
}

const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  variableMapSize: true,
  // Socket.IO puts `undefined` in some packets (e.g. CONNECT's pid); plain MessagePack has nil.
  encodeUndefinedAsNil: true,
  int64AsType: 'number',
});

export function encodePacket(packet: Packet): Uint8Array {
  const doc: Packet = { type: packet.type, nsp: packet.nsp };
  if (packet.data !== undefined) doc.data = packet.data;
  if (packet.id !== undefined) doc.id = packet.id;
  return packr.pack(doc);
}

function isPacket(value: unknown): value is Packet {
  if (typeof value !== 'object' || value === null) return false;
  const p = value as Record<string, unknown>;
  if (!Number.isInteger(p['type']) || (p['type'] as number) < 0 || (p['type'] as number) > 6) {
    return false;
  }
  if (typeof p['nsp'] !== 'string' || !p['nsp'].startsWith('/')) return false;
  if (p['id'] !== undefined && !(Number.isInteger(p['id']) && (p['id'] as number) >= 0))
    return false;
  const data = p['data'];
  switch (p['type']) {
    case PacketType.CONNECT:
      return data === undefined || (typeof data === 'object' && data !== null);
    case PacketType.DISCONNECT:
      return data === undefined;
    case PacketType.CONNECT_ERROR:
      return typeof data === 'string' || (typeof data === 'object' && data !== null);
    case PacketType.EVENT:
    case PacketType.BINARY_EVENT:
      return Array.isArray(data) && data.length > 0 && typeof data[0] === 'string';
    default:
      return Array.isArray(data);
  }
}

function toBytes(chunk: unknown): Uint8Array | null {
  if (chunk instanceof Uint8Array) return chunk;
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  return null;
}

/** What the parser hands up, as the argument of a REJECTED_FRAME_EVENT. */
export interface RejectedFrame {
  code: typeof ErrorCode.MALFORMED_FRAME | typeof ErrorCode.PAYLOAD_TOO_LARGE;
  reason: string;
  bytes: number;
  /** The event the frame carried, when it could be read. */
  event?: string;
}

function rejectedFrame(
  code: RejectedFrame['code'],
  reason: string,
  bytes: number,
  id?: number,
  event?: string,
): Packet {
  const info: RejectedFrame = { code, reason, bytes };
  if (event !== undefined) info.event = event;
  const packet: Packet = { type: PacketType.EVENT, nsp: '/', data: [REJECTED_FRAME_EVENT, info] };
  if (id !== undefined) packet.id = id;
  return packet;
}

type DecoderEvents = { decoded: (packet: Packet) => void };

/** One connection's decoder (Socket.IO makes one per Engine.IO connection). */
export interface MsgpackDecoder
  extends Emitter<Record<string, never>, Record<string, never>, DecoderEvents> {
  /** Never throws: every chunk becomes a packet or a REJECTED_FRAME_EVENT notice. */
  add(chunk: unknown): void;
  /**
   * The connection's handshake was accepted: lift the pre-authentication frame limit to
   * `maxFrameBytes` (default: the parser's). Idempotent.
   */
  authenticate(maxFrameBytes?: number): void;
  /** The frame limit in force now. */
  readonly frameLimit: number;
  destroy(): void;
}

/** The shape Socket.IO (server and client) expects of a `parser` option. */
export interface MsgpackParser {
  protocol: number;
  PacketType: typeof PacketType;
  Encoder: new () => { encode(packet: Packet): Uint8Array[] };
  Decoder: new () => MsgpackDecoder;
  /** Whether `value` is a decoder of this parser (a type guard for the server's seam). */
  isDecoder(value: unknown): value is MsgpackDecoder;
}

export function createMsgpackParser(options: MsgpackParserOptions = {}): MsgpackParser {
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const preAuthMaxFrameBytes = options.preAuthMaxFrameBytes;
  const scanLimits = options.scanLimits ?? PEER_FRAME_LIMITS;

  class Encoder {
    encode(packet: Packet): Uint8Array[] {
      return [encodePacket(packet)];
    }
  }

  class Decoder
    extends Emitter<Record<string, never>, Record<string, never>, DecoderEvents>
    implements MsgpackDecoder
  {
    private authenticated = preAuthMaxFrameBytes === undefined;
    private limit = preAuthMaxFrameBytes ?? maxFrameBytes;

    get frameLimit(): number {
      return this.limit;
    }

    authenticate(limit = maxFrameBytes): void {
      this.authenticated = true;
      this.limit = limit;
    }

    add(chunk: unknown): void {
      const bytes = toBytes(chunk);
      if (bytes === null) {
        // Text frames come from peers that speak Socket.IO's default JSON parser.
        this.reject(
          ErrorCode.MALFORMED_FRAME,
          'text frame: this endpoint speaks MessagePack',
          typeof chunk === 'string' ? chunk.length : 0,
        );
        return;
      }
      if (!this.authenticated && bytes.byteLength > this.limit) {
        // Not decoded at all: before the handshake is accepted only a small CONNECT may come.
        // Socket.IO closes a connection that delivers anything but CONNECT before it joined.
        this.reject(
          ErrorCode.PAYLOAD_TOO_LARGE,
          `frame of ${bytes.byteLength} bytes before authentication exceeds the limit of ${this.limit}`,
          bytes.byteLength,
        );
        return;
      }
      const scan = scanMsgpack(bytes, scanLimits);
      if (!scan.ok) {
        this.reject(
          ErrorCode.MALFORMED_FRAME,
          `refused MessagePack: ${scan.reason}`,
          bytes.byteLength,
        );
        return;
      }
      let decoded: unknown;
      try {
        decoded = packr.unpack(bytes);
      } catch (error) {
        this.reject(
          ErrorCode.MALFORMED_FRAME,
          `undecodable MessagePack: ${error instanceof Error ? error.message : String(error)}`,
          bytes.byteLength,
        );
        return;
      }
      if (!isPacket(decoded)) {
        // Without a valid packet shape we cannot trust a namespace or an ack id: refuse the frame.
        this.reject(ErrorCode.MALFORMED_FRAME, 'not a Socket.IO packet', bytes.byteLength);
        return;
      }
      if (bytes.byteLength > this.limit) {
        // Decoding it was bounded by the pre-scan; it gives the sender its ack.
        const event =
          Array.isArray(decoded.data) && typeof decoded.data[0] === 'string'
            ? decoded.data[0]
            : undefined;
        this.reject(
          ErrorCode.PAYLOAD_TOO_LARGE,
          `frame of ${bytes.byteLength} bytes exceeds the limit of ${this.limit}`,
          bytes.byteLength,
          decoded.id,
          event,
        );
        return;
      }
      if (
        (decoded.type === PacketType.EVENT || decoded.type === PacketType.BINARY_EVENT) &&
        (decoded.data as unknown[])[0] === REJECTED_FRAME_EVENT
      ) {
        // A peer must not forge parser notices; drop silently.
        return;
      }
      this.emitReserved('decoded', decoded);
    }

    private reject(
      code: RejectedFrame['code'],
      reason: string,
      bytes: number,
      id?: number,
      event?: string,
    ): void {
      this.emitReserved('decoded', rejectedFrame(code, reason, bytes, id, event));
    }

    destroy(): void {}
  }

  return {
    protocol: 5,
    PacketType,
    Encoder,
    Decoder,
    isDecoder: (value): value is MsgpackDecoder => value instanceof Decoder,
  };
}
