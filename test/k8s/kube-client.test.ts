import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { API_SERVER_SOCKETS, loadKubeConfig } from '../../src/k8s/kube-client.js';
import { WorkloadEntryStore } from '../../src/k8s/workload-entry-store.js';
import { makeTestPki } from '../helpers/openssl-certs.js';

// A replica that takes over thousands of VMs reads and writes thousands of WorkloadEntries at
// once. Each call on a fresh TLS connection (the client library's default) costs the API server
// and the relay a handshake each; the calls must share a bounded set of kept connections.
test('API calls share a bounded set of kept TLS connections to the API server, and reuse them afterwards', async (t) => {
  const pki = makeTestPki();
  let connections = 0;
  let requests = 0;
  const server = https.createServer({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) }, (_request, response) => {
    requests++;
    // Answered on a later turn, so the calls overlap as they do against a busy API server, and in
    // chunks, as the API server sends larger objects.
    setTimeout(() => {
      response.writeHead(404, { 'content-type': 'application/json' }).write('{"kind":"Status","apiVersion":"v1",');
      setImmediate(() => response.end('"status":"Failure","code":404}'));
    }, 5);
  });
  server.on('secureConnection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  const kubeconfig = path.join(pki.dir, 'kubeconfig');
  writeFileSync(kubeconfig, `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "https://127.0.0.1:${(server.address() as AddressInfo).port}", tls-server-name: istiod.istio-system.svc, certificate-authority-data: ${readFileSync(pki.caCert).toString('base64')} } }]
users: [{ name: relay, user: { token: t } }]
contexts: [{ name: c, context: { cluster: c, user: relay } }]
current-context: c
`);
  const store = new WorkloadEntryStore(loadKubeConfig(kubeconfig));

  const burst = await Promise.all(Array.from({ length: 300 }, (_, i) => store.getEntry('vm', `vm-${i}`)));
  t.true(burst.every((entry) => entry === undefined), 'every read answered (404: no such entry)');
  t.is(requests, 300);
  t.true(connections <= API_SERVER_SOCKETS, `300 concurrent calls over ${connections} connections (at most ${API_SERVER_SOCKETS})`);

  const afterBurst = connections;
  for (let i = 0; i < 20; i++) await store.getEntry('vm', `later-${i}`);
  t.is(connections, afterBurst, 'later calls reuse the kept connections');
});
