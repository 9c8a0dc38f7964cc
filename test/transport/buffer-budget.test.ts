import test from 'ava';
import { BufferBudget, type BudgetHolder } from '../../src/transport/buffer-budget.js';

/** A stream holding `bytes` of one unshared frame, stalled unless it moved bytes `movedMsAgo`. */
function holder(budget: BufferBudget, name: string, bytes: number, ended: string[], movedMsAgo = Number.POSITIVE_INFINITY): BudgetHolder {
  const frame = Buffer.alloc(bytes);
  const stream: BudgetHolder = {
    heldBytes: () => (ended.includes(name) ? 0 : budget.shareOf(frame)),
    evict: () => { ended.push(name); budget.releaseFrame(frame); },
    progressAt: performance.now() - movedMsAgo,
  };
  budget.add(stream);
  budget.queueFrame(frame);
  return stream;
}

test('past the budget the stream holding the most is ended, until the rest fits', (t) => {
  const budget = new BufferBudget(1000);
  const ended: string[] = [];
  holder(budget, 'a', 300, ended);
  holder(budget, 'b', 600, ended);
  const c = holder(budget, 'c', 200, ended);
  t.true(budget.enforce(c), 'the stream that crossed the budget is kept');
  t.deepEqual(ended, ['b']);
  t.is(budget.heldBytes, 500);
  t.is(budget.evictions, 1);
});

test('a stream that is moving bytes (a VM reading a large config) is ended only after every stalled one', (t) => {
  const budget = new BufferBudget(1000);
  const ended: string[] = [];
  holder(budget, 'reading', 700, ended, 10);
  holder(budget, 'stalled-small', 200, ended);
  holder(budget, 'stalled', 300, ended);
  t.true(budget.enforce());
  t.deepEqual(ended, ['stalled'], 'the largest stalled stream goes, not the larger one that reads');
  holder(budget, 'reading-too', 400, ended, 10);
  t.true(budget.enforce());
  t.deepEqual(ended, ['stalled', 'stalled-small', 'reading'], 'with no stalled stream left, the largest of the rest');
});

test('a frame written to many streams counts once, each charged its share', (t) => {
  const budget = new BufferBudget(1000);
  const frame = Buffer.alloc(900);
  for (let index = 0; index < 3; index++) budget.queueFrame(frame);
  t.is(budget.queuedBytes, 900);
  t.is(budget.shareOf(frame), 300);
  budget.releaseFrame(frame);
  budget.releaseFrame(frame);
  t.is(budget.queuedBytes, 900, 'held while any stream still has it queued');
  budget.releaseFrame(frame);
  t.is(budget.queuedBytes, 0);
});

test('room for a response not built yet: the requester is ended instead when it would hold the most, never on a tie', (t) => {
  const budget = new BufferBudget(1000);
  const ended: string[] = [];
  holder(budget, 'stuck', 600, ended);
  const requester = holder(budget, 'requester', 0, ended);
  t.true(budget.makeRoom(requester, 400), 'it fits');
  t.true(budget.makeRoom(requester, 600), 'on a tie with what it would hold, the stuck stream goes');
  t.deepEqual(ended, ['stuck']);
  holder(budget, 'other', 300, ended);
  t.false(budget.makeRoom(requester, 900), 'a response larger than anything held ends its own stream before it is built');
  t.deepEqual(ended, ['stuck', 'requester']);
});

test('a requester that is moving bytes (a new VM asking for its config) is made room for, whatever it would hold', (t) => {
  const budget = new BufferBudget(1000);
  const ended: string[] = [];
  holder(budget, 'a', 300, ended, 10);
  holder(budget, 'b', 400, ended, 10);
  const newVm = holder(budget, 'new', 0, ended, 10);
  t.true(budget.makeRoom(newVm, 900));
  t.deepEqual(ended, ['b', 'a']);
});
