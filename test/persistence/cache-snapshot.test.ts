import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { eventually, startRelay, startSim, testLog } from '../helpers/harness.js';
import { CacheSnapshotStore } from '../../src/persistence/cache-snapshot.js';

async function clusters(target: string): Promise<string[]> {
  const vm = new AdsTestClient(target, 'delta');
  try {
    vm.send({ node: vmNode(), type_url: TypeUrl.cluster });
    return (await vm.next()).resources.map((r) => r.name).sort();
  } finally {
    vm.close();
  }
}

test('a relay restarted while istiod is unreachable serves the last config from disk and says it is degraded', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'snapshot-'));
  const sim = await startSim();
  const upstream = sim.target;
  const first = await startRelay({ upstream, cacheSnapshotDir: dir });
  const live = await clusters(first.target);
  await first.stop();
  await sim.close();
  t.true(JSON.parse(readFileSync(path.join(dir, 'upstream-cache.json'), 'utf8')).groups.length === 1, 'written on stop');

  const second = await startRelay({ upstream, cacheSnapshotDir: dir });
  t.teardown(() => second.stop());
  t.deepEqual(await clusters(second.target), live, 'the same clusters, with istiod gone');
  const readyz = await fetch(`${second.adminUrl}/readyz`);
  const body = await readyz.json() as { ready: boolean; degraded: boolean; upstreamConnected: boolean };
  t.is(readyz.status, 200);
  t.true(body.degraded);
  t.false(body.upstreamConnected);
  t.regex(await (await fetch(`${second.adminUrl}/metrics`)).text(), /meshrelay_degraded 1/);
});

test('a damaged snapshot is ignored; a failed write keeps the previous snapshot', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'snapshot-'));
  const file = path.join(dir, 'upstream-cache.json');
  const sim = await startSim();
  t.teardown(() => sim.close());
  const relay = await startRelay({ upstream: sim.target, cacheSnapshotDir: dir });
  await clusters(relay.target);
  await relay.stop();
  const good = readFileSync(file, 'utf8');

  // The temporary file's path is taken by a directory: the write fails, as on a full disk.
  mkdirSync(`${file}.tmp-${process.pid}`);
  const failing = await startRelay({ upstream: sim.target, cacheSnapshotDir: dir });
  await clusters(failing.target);
  await failing.stop();
  t.is(readFileSync(file, 'utf8'), good, 'the previous snapshot is intact');

  writeFileSync(file, good.replace('"format":1', '"format":1,"tampered":true').replace(/"checksum":"[0-9a-f]{4}/, '"checksum":"0000'));
  const damaged = await startRelay({ upstream: '127.0.0.1:1', cacheSnapshotDir: dir });
  t.teardown(() => damaged.stop());
  const readyz = await (await fetch(`${damaged.adminUrl}/readyz`)).json() as { ready: boolean; snapshot: { loadedFrom: string | null } };
  t.is(readyz.snapshot.loadedFrom, null, 'not loaded');
  t.false(readyz.ready, 'nothing to serve and no upstream: not ready');
});

test('restarted with istiod unreachable, every VM of a known group gets its EDS from the snapshot, also after the first one left', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'snapshot-'));
  const sim = await startSim();
  const httpbin = 'outbound|8000||httpbin.bar.svc.cluster.local';
  const endpoints = async (target: string, name: string) => {
    const vm = new AdsTestClient(target, 'delta');
    try {
      vm.send({ node: vmNode({ name }), type_url: TypeUrl.endpoint, resource_names_subscribe: [httpbin] });
      return (await vm.next()).resources.map((r) => r.name);
    } finally {
      vm.close();
    }
  };
  const first = await startRelay({ upstream: sim.target, cacheSnapshotDir: dir });
  t.deepEqual(await endpoints(first.target, 'vm-before'), [httpbin]);
  await first.stop();
  await sim.close();
  // The group lingers after its last VM leaves; meanwhile no upstream could resend what it drops.
  const second = await startRelay({ upstream: sim.target, cacheSnapshotDir: dir, groupLingerSeconds: 30, cacheSnapshotIntervalSeconds: 0.2 });
  t.teardown(() => second.stop());
  t.deepEqual(await endpoints(second.target, 'vm-a'), [httpbin], 'the first VM after the restart');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  t.deepEqual(await endpoints(second.target, 'vm-b'), [httpbin], 'a later VM, after the first left, still gets the EDS');
  await new Promise((resolve) => setTimeout(resolve, 500));
  const saved = JSON.parse(readFileSync(path.join(dir, 'upstream-cache.json'), 'utf8'));
  t.true(JSON.stringify(saved).includes(httpbin), 'and the next snapshot still holds it');
});

test('saved groups no VM comes back for expire after the linger period, like groups left empty; the groups VMs came back to stay saved', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'snapshot-'));
  const sim = await startSim();
  const connect = (target: string, app: string) => {
    const vm = new AdsTestClient(target, 'delta');
    vm.send({ node: vmNode({ name: `vm-${app}`, labels: { app } }), type_url: TypeUrl.cluster });
    return vm;
  };
  // Both groups must outlive their VMs until the stop writes them, however slow the machine.
  const first = await startRelay({ upstream: sim.target, mode: 'group', cacheSnapshotDir: dir, groupLingerSeconds: 30 });
  for (const app of ['returns', 'gone']) {
    const vm = connect(first.target, app);
    await vm.next();
    vm.close();
  }
  await first.stop();
  await sim.close();
  const savedKeys = () => (JSON.parse(readFileSync(path.join(dir, 'upstream-cache.json'), 'utf8')) as { groups: Array<{ key: string }> }).groups.map((group) => group.key);
  t.is(savedKeys().length, 2);

  const lingerMs = 3000;
  const second = await startRelay({ upstream: sim.target, mode: 'group', cacheSnapshotDir: dir, groupLingerSeconds: lingerMs / 1000, cacheSnapshotIntervalSeconds: 0.2 });
  const started = Date.now();
  const back = connect(second.target, 'returns');
  t.teardown(async () => { back.close(); await second.stop(); });
  t.true((await back.next()).resources.length > 0, 'the returning VM is served from the snapshot');
  await new Promise((resolve) => setTimeout(resolve, 400));
  if (Date.now() - started < lingerMs - 500) t.is(savedKeys().length, 2, 'within the linger period both are still saved');
  const kept = await eventually(savedKeys, (keys) => keys.length === 1, lingerMs + 5000);
  t.is(kept.length, 1, 'the group no VM came back for has expired');
  t.deepEqual(kept, second.groups.list().map((group) => group.key), 'the group its VM came back to is the one saved');
});

/** A real small filesystem (tmpfs) that fills up; undefined where mounting is not permitted. */
function smallFilesystem(kib: number): { dir: string; unmount(): void } | undefined {
  const dir = mkdtempSync(path.join(tmpdir(), 'snapshot-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${kib}k`, 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  return { dir, unmount: () => execFileSync('umount', [dir], { stdio: 'ignore' }) };
}

const probe = smallFilesystem(64);
probe?.unmount();
if (!probe) console.warn('skipping the full-disk snapshot test: mounting a tmpfs is not permitted here (needs root)');
(probe ? test : test.skip)('on a really full disk a snapshot write fails and says so; the previous snapshot stays whole and loads', (t) => {
  const fs64k = smallFilesystem(64);
  if (!fs64k) return t.fail('mounting the tmpfs worked a moment ago and fails now');
  t.teardown(() => fs64k.unmount());
  const store = new CacheSnapshotStore(fs64k.dir, testLog);
  const group = (key: string, kib: number) => ({
    key, types: [{ typeUrl: TypeUrl.cluster, versionInfo: 'v1', resources: [{ name: 'c', version: 'v1', typeUrl: TypeUrl.cluster, body: randomBytes(kib * 1024).toString('base64') }] }],
  });
  t.true(store.write([group('small', 8)]), 'a snapshot that fits is written');
  const good = readFileSync(path.join(fs64k.dir, 'upstream-cache.json'));
  t.false(store.write([group('big', 100)]), 'one larger than the disk is not');
  t.regex(store.lastWriteError, /ENOSPC|short write|read back/);
  t.is(store.writeFailures, 1);
  t.true(readFileSync(path.join(fs64k.dir, 'upstream-cache.json')).equals(good), 'the previous snapshot is untouched');
  t.deepEqual(readdirSync(fs64k.dir), ['upstream-cache.json'], 'no temporary file is left behind');
  const reloaded = new CacheSnapshotStore(fs64k.dir, testLog);
  t.is(reloaded.load(), 1);
  t.truthy(reloaded.claim('small'));
});

test('temporary files a killed relay left behind are removed when the snapshot is loaded', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'snapshot-'));
  writeFileSync(path.join(dir, 'upstream-cache.json.tmp-4242'), '{"format":1,"groups":[');
  const store = new CacheSnapshotStore(dir, testLog);
  t.is(store.load(), 0);
  t.deepEqual(readdirSync(dir), []);
});

test('a snapshot over the size limit is neither written nor loaded; the previous one stays', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'snapshot-'));
  const group = (key: string, kib: number) => ({
    key, types: [{ typeUrl: TypeUrl.cluster, versionInfo: 'v1', resources: [{ name: 'c', version: 'v1', typeUrl: TypeUrl.cluster, body: randomBytes(kib * 1024).toString('base64') }] }],
  });
  const store = new CacheSnapshotStore(dir, testLog, 64 * 1024);
  t.true(store.write([group('small', 8), group('other', 8)]));
  const good = readFileSync(path.join(dir, 'upstream-cache.json'));
  t.false(store.write([group('big', 100)]));
  t.regex(store.lastWriteError, /over the limit of 65536 \(cacheSnapshotMaxMb\)/);
  t.true(readFileSync(path.join(dir, 'upstream-cache.json')).equals(good));
  t.is(new CacheSnapshotStore(dir, testLog).load(), 2, 'what was written group by group loads whole');
  t.is(new CacheSnapshotStore(dir, testLog, 1024).load(), 0, 'a file over the limit is not read (no crash loop on a giant snapshot)');
});
