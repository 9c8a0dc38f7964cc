import test from 'ava';
import { MemoLimit, NonceSource, ResponseMemo } from '../../src/xds/cache/response-memo.js';
import type { UpstreamAdsStream } from '../../src/xds/upstream/upstream-ads-stream.js';
import { UpstreamGroup } from '../../src/xds/upstream/upstream-group.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';

const EDS = TypeUrl.endpoint;
const tick = () => new Promise((resolve) => setImmediate(resolve));

/** A group whose upstream records the subscriptions it is asked for (sent at the end of the tick). */
function groupWithRecordedUpstream() {
  const group = new UpstreamGroup('key', 'group', {}, new ResponseMemo(new NonceSource(), new MemoLimit(Number.POSITIVE_INFINITY)));
  const desired: Array<{ wildcard: boolean; names: string[] }> = [];
  let pending: { wildcard: boolean; names: Set<string> } | undefined;
  const upstream = {
    /** Whether the upstream is answering (it could resend a name asked for again). */
    live: true,
    start() {},
    close() {},
    setDesired(_typeUrl: string, subscription: { wildcard: boolean; names: Set<string> }) {
      if (!pending) setImmediate(() => { desired.push({ wildcard: pending!.wildcard, names: [...pending!.names].sort() }); pending = undefined; });
      pending = subscription;
    },
  };
  group.connect(upstream as unknown as UpstreamAdsStream);
  return { group, desired, upstream };
}

test('VMs that leave and rejoin within one tick keep the group\'s cached resources (the upstream is never told)', async (t) => {
  const { group, desired } = groupWithRecordedUpstream();
  group.changeInterest(EDS, { wildcard: 0, added: ['e1', 'e2'], removed: [] });
  await tick();
  group.cache.apply(EDS, [{ name: 'e1', body: Buffer.from('1') }, { name: 'e2', body: Buffer.from('2') }], []);
  group.changeInterest(EDS, { wildcard: 0, added: [], removed: ['e1', 'e2'] });
  group.changeInterest(EDS, { wildcard: 0, added: ['e1', 'e2'], removed: [] });
  await tick();
  await tick();
  t.deepEqual(desired.map((d) => d.names), [['e1', 'e2'], ['e1', 'e2']], 'the upstream subscription never lost them');
  t.truthy(group.cache.get(EDS, 'e1'));
  t.truthy(group.cache.get(EDS, 'e2'));
});

test('a resource nobody subscribes to any more is forgotten once the upstream is unsubscribed', async (t) => {
  const { group, desired } = groupWithRecordedUpstream();
  group.changeInterest(EDS, { wildcard: 0, added: ['e1', 'e2'], removed: [] });
  await tick();
  group.cache.apply(EDS, [{ name: 'e1', body: Buffer.from('1') }, { name: 'e2', body: Buffer.from('2') }], []);
  group.changeInterest(EDS, { wildcard: 0, added: [], removed: ['e2'] });
  await tick();
  await tick();
  t.deepEqual(desired.at(-1)?.names, ['e1']);
  t.truthy(group.cache.get(EDS, 'e1'));
  t.is(group.cache.get(EDS, 'e2'), undefined);
});

test('while the upstream is away, a named resource its last subscriber left is kept for the next VM; once the upstream answers again it is dropped', async (t) => {
  const { group, upstream } = groupWithRecordedUpstream();
  group.changeInterest(EDS, { wildcard: 0, added: ['e1'], removed: [] });
  group.cache.apply(EDS, [{ name: 'e1', body: Buffer.from('1') }], []);
  upstream.live = false;
  group.changeInterest(EDS, { wildcard: 0, added: [], removed: ['e1'] });
  await new Promise((resolve) => setTimeout(resolve, 1200));
  t.truthy(group.cache.get(EDS, 'e1'), 'the cache is all a new VM can get while istiod is unreachable');
  upstream.live = true;
  await new Promise((resolve) => setTimeout(resolve, 1200));
  t.is(group.cache.get(EDS, 'e1'), undefined, 'the upstream can resend it now: nobody holding it, it goes');
  group.close();
});
