import { gzipSync } from 'node:zlib';
import { RelayError } from '../errors.js';

const HEADER_BYTES = 5;

/**
 * Prefixes one serialized message with gRPC's 5-byte length header. The frame is its own
 * allocation: memos keep frames for minutes, and a small one cut from Node's shared 8 KiB pool
 * would keep the whole slab alive with it.
 */
export function frameMessage(message: Uint8Array, compressed = false): Buffer {
  const frame = Buffer.allocUnsafeSlow(HEADER_BYTES + message.length);
  frame[0] = compressed ? 1 : 0;
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, HEADER_BYTES);
  return frame;
}

/**
 * The same message gzip-compressed, with the header's compressed flag set, for a stream whose
 * response headers said `grpc-encoding: gzip` (grpc PROTOCOL-HTTP2.md, "Length-Prefixed-Message").
 */
export function gzipFrame(frame: Buffer): Buffer {
  return frameMessage(gzipSync(frame.subarray(HEADER_BYTES)), true);
}

/**
 * Splits an HTTP/2 DATA byte stream into gRPC messages. Refuses compressed messages (we advertise
 * identity only) and messages over the size limit before buffering them.
 */
export class MessageDeframer {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxMessageBytes: number) {}

  /** Bytes of a message begun but not yet whole. */
  get pending(): number {
    return this.buffered;
  }

  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const messages: Buffer[] = [];
    while (this.buffered >= HEADER_BYTES) {
      const head = this.peek(HEADER_BYTES);
      const compressed = head[0]!;
      const length = head.readUInt32BE(1);
      if (compressed !== 0) {
        throw new RelayError('MR_COMPRESSION_UNSUPPORTED', 'compressed gRPC messages are not supported (grpc-accept-encoding: identity)');
      }
      if (length > this.maxMessageBytes) {
        throw new RelayError('MR_MESSAGE_TOO_LARGE', `received message larger than max (${length} vs. ${this.maxMessageBytes})`);
      }
      if (this.buffered < HEADER_BYTES + length) break;
      const whole = this.take(HEADER_BYTES + length);
      messages.push(whole.subarray(HEADER_BYTES));
    }
    return messages;
  }

  private peek(count: number): Buffer {
    if (this.chunks[0]!.length < count) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }

  private take(count: number): Buffer {
    const joined = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const taken = joined.subarray(0, count);
    const rest = joined.subarray(count);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return taken;
  }
}

/** grpc-message is percent-encoded (gRPC over HTTP/2 spec: bytes outside 0x20–0x7E and '%'). */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
