import net from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { serveProcess as serve } from '../helpers/serve-process.js';

const json = async (url: string) => (await fetch(url)).json() as Promise<any>;
const metric = async (admin: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`${admin}/metrics`)).text())?.[1]);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A VM that has its clusters (its connection is then surely held by a worker). */
async function configuredVm(xds: string, name: string) {
  const vm = new AdsTestClient(xds, 'delta');
  vm.send({ node: vmNode({ name }), type_url: TypeUrl.cluster } as any);
  const cds: any = await vm.next(20_000);
  vm.send({ type_url: TypeUrl.cluster, response_nonce: cds.nonce } as any);
  return vm;
}

/**
 * What a client past the limit sees: the connection is accepted and closed before the server says
 * anything (a served HTTP/2 connection gets the server's SETTINGS frame at once).
 */
function refusedAtOnce(xds: string): Promise<boolean> {
  const [host, port] = [xds.slice(0, xds.lastIndexOf(':')), Number(xds.slice(xds.lastIndexOf(':') + 1))];
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let received = 0;
    socket.on('data', (chunk) => { received += chunk.length; });
    socket.on('error', () => {});
    socket.on('close', () => resolve(received === 0));
    setTimeout(() => { socket.destroy(); resolve(false); }, 3000).unref();
  });
}

const stateDir = () => mkdtempSync(path.join(tmpdir(), 'meshrelay-capacity-'));

test('one process at its connection limit refuses new connections at once, counts and reports them, stays unready while full, and keeps its admin port', async (t) => {
  const relay = await serve(['--workers', '1', '--max-connections', '3', '--ca-mode', 'off', '--state-dir', stateDir()]);
  t.teardown(() => relay.child.kill('SIGKILL'));
  t.regex(relay.printed, /connections: +3 connections: 1 × 3 \(open-file limit [\d,]+ per process, 256 kept for admin, upstream and files; maxConnections 3; workers 1 as configured\)/);

  const vms = [];
  for (const name of ['a', 'b', 'c']) vms.push(await configuredVm(relay.xds, `vm-${name}`));
  t.true(await refusedAtOnce(relay.xds), 'the fourth connection is closed before it is served');
  t.is(await metric(relay.admin, 'meshrelay_downstream_connections'), 3);
  t.is(await metric(relay.admin, 'meshrelay_downstream_connection_limit'), 3);
  t.is(await metric(relay.admin, 'meshrelay_downstream_connections_refused_total'), 1);
  const full = await fetch(`${relay.admin}/readyz`);
  t.is(full.status, 503, 'a full replica leaves its Service\'s endpoints');
  const detail: any = await full.json();
  t.like(detail.connections, { open: 3, limit: 3, refused: 1, full: true });
  t.regex(detail.connections.capacity, /^3 connections/);

  vms.pop()!.close();
  for (let i = 0; i < 50 && (await fetch(`${relay.admin}/readyz`)).status !== 200; i++) await sleep(100);
  t.is((await fetch(`${relay.admin}/readyz`)).status, 200, 'ready again once a connection closed');
  vms.push(await configuredVm(relay.xds, 'vm-d'));
  for (const vm of vms) vm.close();
});

test('workers with kernel balance each take their share: the pod holds maxConnections over both, and refuses only past it', async (t) => {
  const relay = await serve(['--workers', '2', '--worker-balance', 'kernel', '--max-connections', '12', '--ca-mode', 'off', '--state-dir', stateDir()]);
  t.teardown(() => relay.child.kill('SIGKILL'));
  t.regex(relay.printed, /connections: +12 connections: 2 × 6/);
  const vms = [];
  // One at a time, with the workers' load reports (every 100 ms) in between.
  for (let i = 0; i < 12; i++) {
    vms.push(await configuredVm(relay.xds, `vm-${i}`));
    await sleep(150);
  }
  const syncz: any[] = await json(`${relay.admin}/debug/syncz`);
  t.is(syncz.length, 12, 'no VM was refused while the pod had room');
  const perWorker = [0, 1].map((worker) => syncz.filter((entry) => entry.worker === worker).length);
  t.deepEqual(perWorker, [6, 6], 'each worker holds its share; neither was given more than its limit');
  t.true(await refusedAtOnce(relay.xds), 'the pod is full');
  t.is(await metric(relay.admin, 'meshrelay_downstream_connections'), 12);
  t.true(await metric(relay.admin, 'meshrelay_downstream_connections_refused_total') >= 1);
  const ready = await fetch(`${relay.admin}/readyz`);
  t.is(ready.status, 503);
  t.like(((await ready.json()) as any).connections, { open: 12, limit: 12, perWorker: 6, full: true });

  vms.shift()!.close();
  await sleep(500);
  vms.push(await configuredVm(relay.xds, 'vm-late'));
  t.is((await json(`${relay.admin}/debug/syncz`)).length, 12, 'a place freed on one worker is taken again');
  for (const vm of vms) vm.close();
});
