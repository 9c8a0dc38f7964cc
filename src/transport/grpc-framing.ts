import { gzipSync } from 'node:zlib';
import { RelayError } from '../errors.js';

/** gRPC's length prefix: a compressed flag and a 4-byte big-endian length. */
export const HEADER_BYTES = 5;

/**
 * A frame for a message of `messageBytes`, its 5-byte length header written, the message still to
 * be written after it. The frame is its own allocation: memos keep frames for minutes, and a small
 * one cut from Node's shared 8 KiB pool would keep the whole slab alive with it.
 */
export function allocateFrame(messageBytes: number, compressed = false): Buffer {
  const frame = Buffer.allocUnsafeSlow(HEADER_BYTES + messageBytes);
  frame[0] = compressed ? 1 : 0;
  frame.writeUInt32BE(messageBytes, 1);
  return frame;
}

/** Prefixes one serialized message with gRPC's 5-byte length header. */
export function frameMessage(message: Uint8Array, compressed = false): Buffer {
  const frame = allocateFrame(message.length, compressed);
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
 * A message this large is assembled in one buffer of its declared size instead of a list of the
 * DATA chunks it came in. At this size it is a mapping of its own (ALLOCATOR_ENV in
 * limits/memory-reclaimer.ts), resident only as far as it has been filled and returned whole
 * when it goes; thousands of half-sent messages held as chunks (each a heap block) leave the
 * allocator's heap fragmented, and that memory stays with the process after they are gone.
 */
const ASSEMBLED_MESSAGE_BYTES = 1024 * 1024;

/**
 * Splits an HTTP/2 DATA byte stream into gRPC messages. Refuses compressed messages (we advertise
 * identity only) and messages over the size limit before buffering them.
 */
export class MessageDeframer {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** A large message being filled in, and how much of it has arrived. */
  private assembling: { message: Buffer; filled: number } | undefined;

  constructor(private readonly maxMessageBytes: number) {}

  /** Bytes of a message begun but not yet whole. */
  get pending(): number {
    return this.buffered + (this.assembling?.filled ?? 0);
  }

  push(chunk: Buffer): Buffer[] {
    const messages: Buffer[] = [];
    const assembling = this.assembling;
    if (assembling) {
      const copied = chunk.copy(assembling.message, assembling.filled);
      assembling.filled += copied;
      if (assembling.filled < assembling.message.length) return messages;
      messages.push(assembling.message);
      this.assembling = undefined;
      chunk = chunk.subarray(copied);
      if (chunk.length === 0) return messages;
    }
    this.chunks.push(chunk);
    this.buffered += chunk.length;
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
      if (this.buffered < HEADER_BYTES + length) {
        if (length >= ASSEMBLED_MESSAGE_BYTES) this.assemble(length);
        break;
      }
      const whole = this.take(HEADER_BYTES + length);
      messages.push(whole.subarray(HEADER_BYTES));
    }
    return messages;
  }

  /** Moves the unfinished message (all that is buffered, header first) into a buffer of its size. */
  private assemble(length: number): void {
    const message = Buffer.allocUnsafeSlow(length);
    let filled = 0;
    let skip = HEADER_BYTES;
    for (const chunk of this.chunks) {
      const body = chunk.subarray(Math.min(skip, chunk.length));
      skip -= chunk.length - body.length;
      filled += body.copy(message, filled);
    }
    this.assembling = { message, filled };
    this.chunks = [];
    this.buffered = 0;
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
