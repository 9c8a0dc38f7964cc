import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { vmNode } from '../helpers/ads-client.js';
import { startEdgeSite, toxiproxyUnavailable, upstreamBytes, type EdgeSite } from '../helpers/edge-link.js';
import { defaultMesh, eventually } from '../helpers/harness.js';
import { compareConfigs, ConfigProxy, resourceNames, type ProxyConfig } from '../helpers/proxy-config.js';

const unavailable = toxiproxyUnavailable();
const edgeTest = unavailable ? test.skip : test.serial;
if (unavailable) test('edge link tests (toxiproxy)', (t) => t.log(`skipped: ${unavailable}`));

const HTTPBIN_EDS = 'outbound|8000||httpbin.bar.svc.cluster.local';
const vm = (name: string, app: string) => vmNode({ name, ip: `10.20.0.${name.length}`, labels: { app, version: 'v1' } });

function endpointWeight(config: ProxyConfig): string {
  return config.get(TypeUrl.endpoint)?.get(HTTPBIN_EDS)?.toString('base64') ?? '';
}

async function withSite(run: (site: EdgeSite) => Promise<void>, edgeConfig = {}): Promise<void> {
  const site = await startEdgeSite({ groupLingerSeconds: 3, ...edgeConfig });
  try {
    await site.toxiproxy.shapeLink(site.link, { latencyMs: 50, jitterMs: 10, bandwidthKBps: 0 });
    await run(site);
  } finally {
    await site.close();
  }
}

edgeTest('with the link cut (data stops, sockets stay open): a new VM of a known group is served from the edge cache after the earlier VM left, a VM of an unseen group is told UNAVAILABLE, and after the heal only what changed crosses the link', async (t) => {
  await withSite(async (site) => {
    const first = new ConfigProxy(site.edge.target, 'delta', vm('vm-a1', 'shop'));
    const served = await first.settled(500, 15_000);
    t.true(resourceNames(served, TypeUrl.endpoint).includes(HTTPBIN_EDS));
    first.close();
    const bytesBeforeCut = await upstreamBytes(site.edge, 'shop');

    await site.toxiproxy.cut(site.link);
    // Past the keepalives finding the link dead (~2 s) and the group's linger period (3 s).
    await sleep(4500);
    const upstreamState = async () => ((await (await fetch(`${site.edge.adminUrl}/debug/groups`)).json()) as Array<{ upstream: { state: string } }>)[0]?.upstream.state;
    t.not(await upstreamState(), 'streaming', 'keepalives found the cut link dead; reopened streams are not answered');

    const second = new ConfigProxy(site.edge.target, 'delta', vm('vm-a2', 'shop'));
    const fromCache = await second.settled(500, 5000);
    t.deepEqual(compareConfigs(served, fromCache), [], 'the same configuration as the first VM, from the edge cache');

    const stranger = new ConfigProxy(site.edge.target, 'delta', vm('vm-b1', 'never-seen'));
    const status = await stranger.status;
    t.is(status.code, grpc.status.UNAVAILABLE);
    t.regex(status.details, /has not answered/);
    t.is(stranger.responses(TypeUrl.cluster), 0);

    // istiod changes an endpoint while the edge is cut off; it reaches the VM after the heal.
    const before = endpointWeight(fromCache);
    const mesh = defaultMesh();
    site.sim.sim.updateMesh({ ...mesh, services: mesh.services.map((s) => (s.name === 'httpbin' ? { ...s, endpoints: s.endpoints.slice(0, 1) } : s)) });
    await site.toxiproxy.heal(site.link);
    await second.until((config) => endpointWeight(config) !== before, 15_000);
    await eventually(upstreamState, (state) => state === 'streaming', 10_000);
    const reconnectBytes = (await upstreamBytes(site.edge, 'shop')) - bytesBeforeCut;
    t.log(`full config over the link: ${bytesBeforeCut} bytes; on reconnect after the cut: ${reconnectBytes} bytes`);
    t.true(reconnectBytes < bytesBeforeCut / 4, `the reconnect resent ${reconnectBytes} of ${bytesBeforeCut} bytes: only what changed should cross`);
    t.is(second.reconnects, 0, 'the VM kept its stream through the cut');
    second.close();
  });
});

edgeTest('an edge relay restarted while the link is cut serves new VMs of known groups from its disk snapshot', async (t) => {
  const snapshotDir = mkdtempSync(path.join(tmpdir(), 'meshrelay-edge-snapshot-'));
  await withSite(async (site) => {
    const first = new ConfigProxy(site.edge.target, 'delta', vm('vm-a1', 'shop'));
    const served = await first.settled(500, 15_000);
    // The next scheduled snapshot holds the group's cache.
    await eventually(async () => ((await (await fetch(`${site.edge.adminUrl}/readyz`)).json()) as { snapshot?: { writes: number } }).snapshot?.writes ?? 0, (writes) => writes > 0, 5000);
    first.close();
    await site.toxiproxy.cut(site.link);
    await site.edge.stop();
    const edge = await site.restartEdge();
    const after = new ConfigProxy(edge.target, 'sotw', vm('vm-a2', 'shop'));
    const fromSnapshot = await after.settled(500, 10_000);
    t.deepEqual(compareConfigs(served, fromSnapshot), [], 'the same configuration, from the snapshot, with the link still cut');
    after.close();
    await site.toxiproxy.heal(site.link);
  }, { cacheSnapshotDir: snapshotDir, cacheSnapshotIntervalSeconds: 0.2 });
});

edgeTest('over a link that cuts TCP into small segments, then resets the connection, the edge\'s VMs get the same config and keep their streams, and the edge resumes with what it holds', async (t) => {
  await withSite(async (site) => {
    await site.toxiproxy.addToxic(site.link, 'small-segments', { type: 'slicer', attributes: { average_size: 64, size_variation: 32, delay: 100 } });
    const proxy = new ConfigProxy(site.edge.target, 'delta', vmNode({ labels: { app: 'shop' } }));
    const sliced = await proxy.settled(500, 20_000);
    const direct = new ConfigProxy(site.central.target, 'delta', vmNode({ name: 'vm-reference', labels: { app: 'shop' } }));
    t.deepEqual(compareConfigs(await direct.settled(500, 10_000), sliced), [], 'the same as a VM at the centre gets');
    direct.close();
    await site.toxiproxy.removeToxic(site.link, 'small-segments');
    const bytesBefore = await upstreamBytes(site.edge, 'shop');
    await site.toxiproxy.addToxic(site.link, 'reset', { type: 'reset_peer', attributes: { timeout: 0 } });
    const groups = async () => ((await (await fetch(`${site.edge.adminUrl}/debug/groups`)).json()) as Array<{ upstream: { streamsOpened: number; state: string } }>)[0]!.upstream;
    await eventually(groups, (upstream) => upstream.streamsOpened > 1, 10_000);
    await site.toxiproxy.removeToxic(site.link, 'reset');
    await eventually(groups, (upstream) => upstream.state === 'streaming', 10_000);
    const resent = (await upstreamBytes(site.edge, 'shop')) - bytesBefore;
    t.true(resent < bytesBefore / 4, `after the reset the edge resumed with its versions: ${resent} bytes crossed again of ${bytesBefore}`);
    t.is(proxy.reconnects, 0, 'the VM never noticed');
    proxy.close();
  });
});
