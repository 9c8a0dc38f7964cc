import test from 'ava';
import { GroupCredentials, memberCredentials } from '../../src/xds/upstream/group-credentials.js';
import type { StreamIdentity } from '../../src/xds/view.js';

const jwt = (claims: object) => `Bearer e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;
const member = (streamId: string, callMetadata: Record<string, string>, forwardedClientCert?: string): StreamIdentity => ({
  streamId, callMetadata, refuse: () => {}, subscribedNames: () => new Set(),
  ...(forwardedClientCert ? { caller: { trustDomain: 'cluster.local', namespace: 'vm', serviceAccount: 'vm-sa', forwardedClientCert } } : {}),
});
const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

test('a member lends its token with its ClusterID, and its XFCC when it proved itself with a certificate', (t) => {
  const token = jwt({ exp: inAnHour() });
  const credentials = memberCredentials(member('s1', { authorization: token, clusterid: 'Kubernetes', 'user-agent': 'x' }, 'Hash=ab;URI=spiffe://cluster.local/ns/vm/sa/vm-sa'));
  t.deepEqual(credentials.map((c) => [c.kind, c.metadata]), [
    ['token', { authorization: token, clusterid: 'Kubernetes' }],
    ['certificate', { 'x-forwarded-client-cert': 'Hash=ab;URI=spiffe://cluster.local/ns/vm/sa/vm-sa' }],
  ]);
  t.deepEqual(memberCredentials(member('s2', {})), [], 'nothing to lend: the stream opens bare (e.g. toward 15010)');
});

test('an expired token is never picked; a refused credential is not offered again; the next member\'s is', (t) => {
  const group = new GroupCredentials();
  group.add('expired', memberCredentials(member('expired', { authorization: jwt({ exp: Math.floor(Date.now() / 1000) - 10 }) })));
  const first = jwt({ exp: inAnHour(), sub: 'first' });
  const second = jwt({ exp: inAnHour(), sub: 'second' });
  group.add('first', memberCredentials(member('first', { authorization: first })));
  group.add('second', memberCredentials(member('second', { authorization: second })));
  t.is(group.pick()?.metadata.authorization, first);
  group.refuseInUse();
  t.false(group.offersUsable('first'));
  t.is(group.pick()?.metadata.authorization, second);
  group.refuseInUse();
  t.is(group.pick(), undefined, 'every credential refused or expired: wait for a member with a new one');
  t.true(group.any);
  t.like(group.summary(), { members: 3, inUse: 'none', refused: 2 });
});

test('the member that opened the stream leaving changes nothing until the next pick, which takes a current member\'s', (t) => {
  const group = new GroupCredentials();
  const a = jwt({ exp: inAnHour(), sub: 'a' });
  const b = jwt({ exp: inAnHour(), sub: 'b' });
  group.add('a', memberCredentials(member('a', { authorization: a })));
  group.add('b', memberCredentials(member('b', { authorization: b })));
  t.is(group.pick()?.metadata.authorization, a);
  group.remove('a');
  t.is(group.summary().inUse, 'token');
  t.is(group.pick()?.metadata.authorization, b);
});
