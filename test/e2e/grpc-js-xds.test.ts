import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import test from 'ava';
import { parseMesh } from '../../src/sim/mesh-model.js';
import { callWho, proxylessBootstrap, startEchoBackend } from '../helpers/echo-backend.js';
import { eventually, startRelay, startSim } from '../helpers/harness.js';

grpcXds.register();

function echoMesh(port: number) {
  return parseMesh(`
networks:
  net1: { clusterId: cluster1 }
services:
  - name: echo
    namespace: demo
    ports: [{ port: 7070, name: grpc }]
    endpoints:
      - { address: 127.0.0.1, port: ${port}, network: net1, tlsMode: disabled }
`, 'e2e mesh');
}

for (const mode of ['group', 'stream'] as const) {
  test(`[${mode} mode] @grpc/grpc-js-xds resolves xds:/// through the relay, calls a real backend, and follows an endpoint change`, async (t) => {
    const first = await startEchoBackend('backend-one');
    const second = await startEchoBackend('backend-two');
    const sim = await startSim(echoMesh(first.port));
    const relay = await startRelay({ upstream: sim.target, mode });
    const bootstrap = proxylessBootstrap(relay.target, 'demo', { SERVICE_ACCOUNT: 'echo-client', NETWORK: 'net1', CLUSTER_ID: 'cluster1' });
    const client = new grpc.Client('xds:///echo.demo.svc.cluster.local:7070', grpc.credentials.createInsecure(), {
      'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config': JSON.stringify(bootstrap),
    });
    t.teardown(async () => {
      client.close();
      await relay.stop();
      await sim.close();
      await first.close();
      await second.close();
    });

    t.is(await callWho(client), 'backend-one');
    const sessions = relay.ads.syncStatus();
    t.is(sessions.length, 1);
    t.deepEqual(Object.keys(sessions[0]!.types).sort(), ['CDS', 'EDS', 'LDS', 'RDS']);
    t.true(Object.values(sessions[0]!.types).every((type) => type.versionAcked !== '' && type.nacks === 0), 'grpc-js-xds ACKed every type');

    sim.sim.setEndpoints('echo', 'demo', [{
      address: '127.0.0.1', port: second.port, network: 'net1', locality: '', weight: 1, tlsMode: 'disabled', labels: {}, serviceAccount: 'default',
    }]);
    const answer = await eventually(() => callWho(client), (who) => who === 'backend-two', 15_000);
    t.is(answer, 'backend-two');
  });
}
