import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { formatAddress } from '../../src/transport/listen-address.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { eventually, startRelay, startSim } from '../helpers/harness.js';
import { makeTestPki } from '../helpers/openssl-certs.js';

test('the TLS listener serves ADS under istiod\'s name to authenticated VMs only', async (t) => {
  const pki = makeTestPki();
  const sim = await startSim();
  const relay = await startRelay({
    upstream: sim.target,
    tlsListen: '127.0.0.1:0',
    tlsCertFile: pki.serverCert,
    tlsKeyFile: pki.serverKey,
    tlsClientCaFile: pki.caCert,
  });
  t.teardown(async () => {
    await relay.stop();
    await sim.close();
  });
  const target = formatAddress(relay.addresses.tls!);
  const options = { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc', 'grpc.default_authority': 'istiod.istio-system.svc' };
  const withClientCert = grpc.credentials.createSsl(pki.read(pki.caCert), pki.read(pki.clientKey), pki.read(pki.clientCert));
  const withoutClientCert = grpc.credentials.createSsl(pki.read(pki.caCert));
  const served = new AdsTestClient(target, 'delta', new grpc.Client(target, withClientCert, options), {}, true);
  served.send({ node: vmNode(), type_url: TypeUrl.cluster });
  t.true((await served.next()).resources.length > 0, 'a VM with its workload certificate is served');
  served.close();
  const anonymous = new AdsTestClient(target, 'delta', new grpc.Client(target, withoutClientCert, options), {}, true);
  anonymous.send({ node: vmNode(), type_url: TypeUrl.cluster });
  t.is((await anonymous.status).code, grpc.status.UNAUTHENTICATED, 'no certificate and no token: refused, as istiod refuses on 15012');
  anonymous.close();
});

test('a client that does not trust the relay\'s certificate cannot connect', async (t) => {
  const pki = makeTestPki();
  const other = makeTestPki();
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target, tlsListen: '127.0.0.1:0', tlsCertFile: pki.serverCert, tlsKeyFile: pki.serverKey });
  t.teardown(async () => {
    await relay.stop();
    await sim.close();
  });
  const target = formatAddress(relay.addresses.tls!);
  const client = new grpc.Client(target, grpc.credentials.createSsl(other.read(other.caCert)), { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc' });
  const vm = new AdsTestClient(target, 'delta', client, {}, true);
  t.teardown(() => vm.close());
  vm.send({ node: vmNode(), type_url: TypeUrl.cluster });
  t.is((await vm.status).code, grpc.status.UNAVAILABLE);
});

test('replaced certificate files are served to new connections without a restart', async (t) => {
  const first = makeTestPki();
  const second = makeTestPki();
  const sim = await startSim();
  const dir = mkdtempSync(path.join(tmpdir(), 'serving-'));
  copyFileSync(first.serverCert, path.join(dir, 'tls.crt'));
  copyFileSync(first.serverKey, path.join(dir, 'tls.key'));
  const relay = await startRelay({ upstream: sim.target, tlsListen: '127.0.0.1:0', tlsCertFile: path.join(dir, 'tls.crt'), tlsKeyFile: path.join(dir, 'tls.key'), xdsIdentityCheck: false });
  t.teardown(async () => {
    await relay.stop();
    await sim.close();
  });
  const target = formatAddress(relay.addresses.tls!);
  const fetchClusters = async (pki: ReturnType<typeof makeTestPki>) => {
    const client = new grpc.Client(target, grpc.credentials.createSsl(pki.read(pki.caCert)), { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc' });
    const vm = new AdsTestClient(target, 'delta', client, {}, true);
    vm.send({ node: vmNode(), type_url: TypeUrl.cluster });
    const outcome = await Promise.race([vm.next(3000).then(() => 'served'), vm.status.then((s) => grpc.status[s.code])]).catch(() => 'timeout');
    vm.close();
    return outcome;
  };
  t.is(await fetchClusters(first), 'served');
  copyFileSync(second.serverKey, path.join(dir, 'tls.key'));
  copyFileSync(second.serverCert, path.join(dir, 'tls.crt'));
  const outcome = await eventually(() => fetchClusters(second), (result) => result === 'served', 5000);
  t.is(outcome, 'served');
});

test('a rotated upstream root file is taken for new upstream connections without a restart', async (t) => {
  const pki = makeTestPki();
  const other = makeTestPki();
  const sim = await startSim();
  // A TLS upstream serving istiod's name from `pki` (a relay in front of the simulator stands in for istiod's 15012).
  const upstream = await startRelay({ upstream: sim.target, tlsListen: '127.0.0.1:0', tlsCertFile: pki.serverCert, tlsKeyFile: pki.serverKey, xdsIdentityCheck: false });
  const rootFile = path.join(mkdtempSync(path.join(tmpdir(), 'upstream-root-')), 'root-cert.pem');
  copyFileSync(other.caCert, rootFile);
  const relay = await startRelay({ upstream: formatAddress(upstream.addresses.tls!), upstreamCaFile: rootFile, upstreamServerName: 'istiod.istio-system.svc' });
  t.teardown(async () => {
    await relay.stop();
    await upstream.stop();
    await sim.close();
  });
  const vm = new AdsTestClient(relay.target, 'delta');
  t.teardown(() => vm.close());
  vm.send({ node: vmNode(), type_url: TypeUrl.cluster });
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.false(relay.groups.hasReceivedConfig(), 'the upstream\'s certificate does not chain to the configured root');
  copyFileSync(pki.caCert, rootFile);
  t.true((await vm.next(15_000)).resources.length > 0, 'after the root file is replaced, the relay reaches its upstream and serves the VM');
});
