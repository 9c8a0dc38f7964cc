import test from 'ava';
import { fullCollection, MemoryReclaimer, withAllocatorEnv } from '../../src/limits/memory-reclaimer.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('a collection is asked for once, shortly after a large release, and no sooner than the interval after the last', async (t) => {
  const runs: number[] = [];
  const reclaimer = new MemoryReclaimer({ thresholdBytes: 1000, settleMs: 50, minIntervalMs: 400, collect: () => { runs.push(performance.now()); } });
  t.teardown(() => reclaimer.close());
  reclaimer.released(600);
  await sleep(150);
  t.is(runs.length, 0, 'below the threshold nothing is collected');
  const crossed = performance.now();
  reclaimer.released(500);
  reclaimer.released(5000);
  await sleep(150);
  t.is(runs.length, 1, 'a burst of releases makes one collection');
  t.true(runs[0]! - crossed >= 45, 'after the burst settles');
  reclaimer.released(2000);
  await sleep(150);
  t.is(runs.length, 1, 'the next waits out the interval');
  await sleep(400);
  t.is(runs.length, 2);
  t.true(runs[1]! - runs[0]! >= 395);
  t.is(reclaimer.collections, 2);
});

test('the full collection frees Buffers nothing refers to any more', async (t) => {
  const collect = fullCollection();
  // Small enough that V8 would not collect it on its own here.
  const weak = new WeakRef(Buffer.alloc(1024 * 1024, 1));
  await sleep(0);
  t.truthy(weak.deref(), 'alive until collected');
  await collect();
  await sleep(0);
  t.is(weak.deref(), undefined);
});

test('worker processes get the allocator setting unless the operator chose one', (t) => {
  t.is(withAllocatorEnv({ PATH: '/bin' }).MALLOC_MMAP_THRESHOLD_, String(1024 * 1024));
  t.is(withAllocatorEnv({ MALLOC_MMAP_THRESHOLD_: '65536' }).MALLOC_MMAP_THRESHOLD_, '65536');
});
