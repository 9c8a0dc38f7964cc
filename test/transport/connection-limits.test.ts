import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { startRelay, startSim } from '../helpers/harness.js';

test('a connection past its maximum age gets GOAWAY, and its ADS streams end with UNAVAILABLE after the grace', async (t) => {
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target, maxConnectionAgeSeconds: 0.4, maxConnectionAgeGraceSeconds: 0.2 });
  const vm = new AdsTestClient(relay.target, 'delta');
  t.teardown(async () => {
    vm.close();
    await relay.stop();
    await sim.close();
  });
  vm.send({ node: vmNode(), type_url: TypeUrl.cluster });
  await vm.next();
  const started = Date.now();
  const status = await vm.status;
  t.is(status.code, grpc.status.UNAVAILABLE);
  t.regex(status.details, /maximum age/);
  t.true(Date.now() - started < 5000);
  // The VM reconnects (here: to the same relay) and is served again.
  const again = new AdsTestClient(relay.target, 'delta');
  t.teardown(() => again.close());
  again.send({ node: vmNode(), type_url: TypeUrl.cluster });
  t.true((await again.next()).resources.length > 0);
});

test('an idle connection with no stream is closed after the idle timeout', async (t) => {
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target, idleTimeoutSeconds: 0.3 });
  t.teardown(async () => {
    await relay.stop();
    await sim.close();
  });
  const session = http2.connect(`http://${relay.target}`);
  t.teardown(() => session.destroy());
  const closedAfter = await new Promise<number>((resolve) => {
    const opened = Date.now();
    session.on('goaway', () => resolve(Date.now() - opened));
    session.on('close', () => resolve(Date.now() - opened));
    session.on('error', () => {});
  });
  t.true(closedAfter >= 250 && closedAfter < 5000, `closed after ${closedAfter} ms`);
});
