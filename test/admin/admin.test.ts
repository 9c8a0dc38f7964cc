import test from 'ava';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { rig, vmNode } from '../helpers/setup.js';
import { eventually } from '../helpers/harness.js';

const get = async (url: string) => {
  const response = await fetch(url);
  return { status: response.status, body: await response.json() as any };
};

test('healthz, readyz and an index of pages for unknown paths', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  t.is((await get(`${r.relay.adminUrl}/healthz`)).status, 200);
  const ready = await eventually(() => get(`${r.relay.adminUrl}/readyz`), (response) => response.status === 200);
  t.true(ready.body.ready);
  const missing = await get(`${r.relay.adminUrl}/nope`);
  t.is(missing.status, 404);
  t.true(missing.body.pages.includes('/debug/syncz'));
});

test('syncz shows per VM its key, mode, and per type the versions sent and acked', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(TypeUrl.cluster, { a: 'A' }, 'v1');
  const vm = r.sotw();
  vm.send({ node: vmNode({ name: 'vm-7' }), type_url: TypeUrl.cluster });
  const first = await vm.next();
  vm.send({ type_url: TypeUrl.cluster, version_info: first.version_info, response_nonce: first.nonce });
  const [entry] = (await eventually(() => get(`${r.relay.adminUrl}/debug/syncz?proxy=${encodeURIComponent('sidecar~172.16.0.5~vm-7.vm~vm.svc.cluster.local')}`),
    (response) => response.body[0]?.types?.CDS?.versionAcked === 'v1')).body;
  t.is(entry.mode, 'group');
  t.regex(entry.key, /^sidecar\/vm\/vm-sa\/vm-net#/);
  t.is(entry.protocol, 'sotw');
  t.is(entry.phase, 'serving');
  t.is(entry.types.CDS.versionSent, 'v1');
  t.is(entry.types.CDS.nonceSent, first.nonce);
  t.true(entry.types.CDS.wildcard);
});

test('health reports from istio-agent are recorded per VM and never answered', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  const vm = r.delta();
  vm.send({ node: vmNode({ name: 'sick' }), type_url: TypeUrl.healthInformation, error_detail: { code: 2, message: 'readiness probe failed' } });
  const entry = await eventually(async () => (await get(`${r.relay.adminUrl}/debug/syncz`)).body[0], (e) => e?.health !== undefined);
  t.false(entry.health.healthy);
  t.is(entry.health.message, 'readiness probe failed');
  vm.send({ type_url: TypeUrl.healthInformation });
  const healthy = await eventually(async () => (await get(`${r.relay.adminUrl}/debug/syncz`)).body[0], (e) => e.health.healthy === true);
  t.is(healthy.health.message, '');
  t.true(await vm.quietFor(200));
});

test('groups shows each group\'s members, key fields, upstream state and subscriptions', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(TypeUrl.cluster, { a: 'A' });
  const vms = [r.delta(), r.delta()];
  vms.forEach((vm, i) => vm.send({ node: vmNode({ name: `m${i}` }), type_url: TypeUrl.cluster }));
  await Promise.all(vms.map((vm) => vm.next()));
  const [group] = (await get(`${r.relay.adminUrl}/debug/groups`)).body;
  t.is(group.members, 2);
  t.is(group.fields.NAMESPACE, 'vm');
  t.is(group.upstream.state, 'streaming');
  t.true(group.upstream.responses >= 1);
  t.deepEqual(group.subscriptions.CDS, { wildcard: true, names: 0, resources: 1 });
});

test('config_dump shows what one proxy was sent, decoded; unknown proxies are 404', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  const vm = r.sotw();
  r.upstream.set(TypeUrl.endpoint, { e1: 'E1' }, 'v7');
  vm.send({ node: vmNode({ name: 'dumped' }), type_url: TypeUrl.endpoint, resource_names: ['e1'] });
  await vm.next();
  const proxy = 'sidecar~172.16.0.5~dumped.vm~vm.svc.cluster.local';
  const dump = await get(`${r.relay.adminUrl}/debug/config_dump?proxy=${encodeURIComponent(proxy)}`);
  t.is(dump.status, 200);
  const eds = dump.body[0].types.EDS;
  t.is(eds.versionSent, 'v7');
  t.is(eds.resources[0].name, 'e1');
  t.is(eds.resources[0].resource.cluster_name, 'e1', 'decoded as a ClusterLoadAssignment');
  t.is((await get(`${r.relay.adminUrl}/debug/config_dump?proxy=nobody`)).status, 404);
  t.is((await get(`${r.relay.adminUrl}/debug/config_dump`)).status, 400);
});

test('the log level can be read and changed at runtime; a bad level is refused', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  t.is((await get(`${r.relay.adminUrl}/logging`)).body.level, 'silent');
  const changed = await fetch(`${r.relay.adminUrl}/logging?level=debug`, { method: 'PUT' });
  t.is(changed.status, 200);
  t.is((await get(`${r.relay.adminUrl}/logging`)).body.level, 'debug');
  t.is((await fetch(`${r.relay.adminUrl}/logging?level=loud`, { method: 'PUT' })).status, 400);
  t.is((await fetch(`${r.relay.adminUrl}/logging?level=info`)).status, 200, 'a GET never changes it');
  t.is((await get(`${r.relay.adminUrl}/logging`)).body.level, 'debug');
  await fetch(`${r.relay.adminUrl}/logging?level=silent`, { method: 'PUT' });
});

test('metrics count pushes and NACKs by type, push and convergence times, upstream stream state, and cached resources', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(TypeUrl.cluster, { a: 'A' });
  const vm = r.sotw();
  vm.send({ node: vmNode(), type_url: TypeUrl.cluster });
  const first = await vm.next();
  vm.send({ type_url: TypeUrl.cluster, response_nonce: first.nonce, error_detail: { code: 3, message: 'no' } });
  await vm.quietFor(100);
  const metrics = await (await fetch(`${r.relay.adminUrl}/metrics`)).text();
  t.regex(metrics, /meshrelay_xds_pushes_total\{type="CDS"\} 1/);
  t.regex(metrics, /meshrelay_xds_nacks_total\{type="CDS"\} 1/);
  t.regex(metrics, /meshrelay_cache_resources 1/);
  t.regex(metrics, /meshrelay_xds_connected_proxies 1/);
  t.regex(metrics, /meshrelay_xds_push_time_seconds_count\{type="CDS"\} 1/);
  t.regex(metrics, /meshrelay_upstream_stream_state\{state="streaming"\} 1/);

  // A change upstream reaches the VM: one convergence sample, from cache to the proxy's stream.
  const samples = (text: string) => Number(/meshrelay_proxy_convergence_time_seconds_count\{type="CDS"\} (\d+)/.exec(text)?.[1] ?? 0);
  r.upstream.set(TypeUrl.cluster, { a: 'A2' });
  await vm.next();
  const after = await (await fetch(`${r.relay.adminUrl}/metrics`)).text();
  t.is(samples(after), samples(metrics) + 1);
  const sum = Number(/meshrelay_proxy_convergence_time_seconds_sum\{type="CDS"\} (\S+)/.exec(after)?.[1]);
  t.true(sum > 0 && sum < 5, `convergence ${sum}s`);
});
