import test from 'ava';
import { ResourceCache } from '../../src/xds/cache/resource-cache.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';

// istiod sends Delta resources without versions of their own and one push version for every stream
// of a push, so two groups can receive different bytes under the same push version. A VM that moves
// group resumes with the versions it holds: they must name content, or it would keep the old bytes.
test('a resource the upstream gives no version is versioned by its content, so different content never shares a version across groups', (t) => {
  const [a, b] = [new ResourceCache(), new ResourceCache()];
  const push = '2026-12-01T07:30:00Z/23';
  a.apply(TypeUrl.listener, [{ name: 'virtualInbound', body: Buffer.from('with inbound 8080') }], [], { versionInfo: push });
  b.apply(TypeUrl.listener, [{ name: 'virtualInbound', body: Buffer.from('with inbound 9191') }], [], { versionInfo: push });
  const [inA, inB] = [a.get(TypeUrl.listener, 'virtualInbound')!, b.get(TypeUrl.listener, 'virtualInbound')!];
  t.not(inA.version, inB.version);
  t.is(a.versionInfo(TypeUrl.listener), push, 'the response keeps the upstream\'s push version');
  const same = new ResourceCache();
  same.apply(TypeUrl.listener, [{ name: 'virtualInbound', body: Buffer.from('with inbound 8080') }], [], { versionInfo: 'another push' });
  t.is(same.get(TypeUrl.listener, 'virtualInbound')!.version, inA.version, 'equal bytes, equal version, whichever push brought them');
  b.apply(TypeUrl.cluster, [{ name: 'c', version: 'upstream-v7', body: Buffer.from('x') }], []);
  t.is(b.get(TypeUrl.cluster, 'c')!.version, 'upstream-v7', 'a version the upstream gives is kept');
});
