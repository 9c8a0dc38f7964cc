import { randomBytes } from 'node:crypto';
import test from 'ava';
import { MessageDeframer, frameMessage } from '../../src/transport/grpc-framing.js';

/** Cuts `bytes` at pseudo-random points, as HTTP/2 DATA frames and socket reads would. */
function cut(bytes: Buffer, seed: number): Buffer[] {
  const pieces: Buffer[] = [];
  let state = seed;
  for (let offset = 0; offset < bytes.length;) {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    const size = 1 + (state % 40_000);
    pieces.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return pieces;
}

test('messages small and large (assembled in one buffer past 1 MiB), cut anywhere, come out whole and in order', (t) => {
  const messages = [10, 0, 3, 2 * 1024 * 1024 + 7, 100, 1024 * 1024, 5, 1024 * 1024 - 1, 3 * 1024 * 1024].map((size) => randomBytes(size));
  const stream = Buffer.concat(messages.map((message) => frameMessage(message)));
  for (const seed of [1, 2, 3]) {
    const deframer = new MessageDeframer(4 * 1024 * 1024);
    const out: Buffer[] = [];
    let maxPending = 0;
    for (const piece of cut(stream, seed)) {
      out.push(...deframer.push(piece));
      maxPending = Math.max(maxPending, deframer.pending);
    }
    t.is(out.length, messages.length);
    out.forEach((message, index) => t.true(message.equals(messages[index]!), `message ${index}, seed ${seed}`));
    t.is(deframer.pending, 0);
    t.true(maxPending < 3 * 1024 * 1024 + 5, 'pending counts what arrived, never more than a message');
  }
});

test('a large message begun and never finished counts only what has arrived', (t) => {
  const deframer = new MessageDeframer(4 * 1024 * 1024);
  const frame = frameMessage(randomBytes(4 * 1024 * 1024 - 10));
  t.deepEqual(deframer.push(frame.subarray(0, 100_000)), []);
  t.is(deframer.pending, 100_000 - 5);
  t.deepEqual(deframer.push(frame.subarray(100_000, frame.length - 100)), []);
  t.is(deframer.pending, frame.length - 100 - 5);
});
