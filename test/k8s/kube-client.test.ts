import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { API_SERVER_SOCKETS, loadKubeConfig } from '../../src/k8s/kube-client.js';
import { WorkloadEntryStore } from '../../src/k8s/workload-entry-store.js';
import type { WorkloadEntry } from '../../src/k8s/workload-entry-template.js';
import { makeTestPki } from '../helpers/openssl-certs.js';

// A replica that takes over thousands of VMs reads and writes thousands of WorkloadEntries at
// once. Each call on a fresh TLS connection (the client library's default) costs the API server
// and the relay a handshake each; the calls must share a bounded set of kept connections.

/** An HTTPS stand-in for the API server: GETs are 404 (sent in chunks, as larger objects are), writes wait for `releaseWrites`. */
async function apiServer(t: import('ava').ExecutionContext) {
  const pki = makeTestPki();
  const seen = { connections: 0, reads: 0, writes: 0 };
  let releaseWrites!: () => void;
  const writesReleased = new Promise<void>((resolve) => { releaseWrites = resolve; });
  const server = https.createServer({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) }, (request, response) => {
    if (request.method === 'GET') {
      seen.reads++;
      // Answered on a later turn, so the calls overlap as they do against a busy API server.
      setTimeout(() => {
        response.writeHead(404, { 'content-type': 'application/json' }).write('{"kind":"Status","apiVersion":"v1",');
        setImmediate(() => response.end('"status":"Failure","code":404}'));
      }, 5);
      return;
    }
    const body: Buffer[] = [];
    request.on('data', (chunk: Buffer) => body.push(chunk));
    request.on('end', () => void writesReleased.then(() => {
      seen.writes++;
      response.writeHead(200, { 'content-type': 'application/json' }).end(Buffer.concat(body));
    }));
  });
  server.on('secureConnection', () => seen.connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => { releaseWrites(); server.closeAllConnections(); server.close(() => resolve()); }));
  const kubeconfig = path.join(pki.dir, 'kubeconfig');
  writeFileSync(kubeconfig, `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "https://127.0.0.1:${(server.address() as AddressInfo).port}", tls-server-name: istiod.istio-system.svc, certificate-authority-data: ${readFileSync(pki.caCert).toString('base64')} } }]
users: [{ name: relay, user: { token: t } }]
contexts: [{ name: c, context: { cluster: c, user: relay } }]
current-context: c
`);
  return { store: new WorkloadEntryStore(loadKubeConfig(kubeconfig)), seen, releaseWrites };
}

test('API calls share a bounded set of kept TLS connections to the API server, and reuse them afterwards', async (t) => {
  const api = await apiServer(t);
  const burst = await Promise.all(Array.from({ length: 300 }, (_, i) => api.store.getEntry('vm', `vm-${i}`)));
  t.true(burst.every((entry) => entry === undefined), 'every read answered (404: no such entry)');
  t.is(api.seen.reads, 300);
  t.true(api.seen.connections <= API_SERVER_SOCKETS, `300 concurrent calls over ${api.seen.connections} connections (at most ${API_SERVER_SOCKETS})`);

  const afterBurst = api.seen.connections;
  for (let i = 0; i < 20; i++) await api.store.getEntry('vm', `later-${i}`);
  t.is(api.seen.connections, afterBurst, 'later calls reuse the kept connections');
});

test('reads are not queued behind writes: a VM waiting for its entry to be read is not held up by a backlog of takeovers', async (t) => {
  const api = await apiServer(t);
  const entry = (i: number): WorkloadEntry => ({ apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', metadata: { name: `vm-${i}`, namespace: 'vm', resourceVersion: '1' }, spec: { address: '172.16.0.1' } });
  const writes = Promise.all(Array.from({ length: 200 }, (_, i) => api.store.replace(entry(i))));
  t.is(await api.store.getEntry('vm', 'returning'), undefined, 'read answered while 200 writes wait');
  t.is(api.seen.writes, 0);
  api.releaseWrites();
  t.is((await writes).length, 200, 'every write answered once the API server gets to them');
});
