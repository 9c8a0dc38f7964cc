import http2 from 'node:http2';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import { manageConnection, type ConnectionPolicy } from '../../src/transport/connection-lifecycle.js';

// The relay's keepalive for VM connections behaves as grpc-go's server keepalive that istiod runs:
// only a connection nothing was read from for the interval is pinged, and only one nothing is read
// from for the timeout after that is closed (internal/transport/http2_server.go, keepalive()).
const policy: ConnectionPolicy = {
  keepaliveIntervalMs: 300, keepaliveTimeoutMs: 300, idleTimeoutMs: 0, maxConnectionAgeMs: 0, maxConnectionAgeJitter: 0, maxConnectionAgeGraceMs: 0,
};

async function keepaliveServer(t: { teardown(fn: () => void): void }) {
  const server = http2.createServer();
  const closed: string[] = [];
  server.on('session', (session) => {
    manageConnection(session, policy, () => {});
    session.on('close', () => closed.push(`${session.socket?.remotePort ?? '?'}`));
  });
  server.on('stream', (stream) => { stream.on('data', () => {}); stream.respond({ ':status': 200 }); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  return { port: (server.address() as net.AddressInfo).port, closed };
}

test('an idle VM connection is pinged and kept while it answers; a sending one is not pinged at all', async (t) => {
  const { port } = await keepaliveServer(t);
  const idle = http2.connect(`http://127.0.0.1:${port}`);
  const busy = http2.connect(`http://127.0.0.1:${port}`);
  t.teardown(() => { idle.destroy(); busy.destroy(); });
  const pings = { idle: 0, busy: 0 };
  idle.on('ping', () => pings.idle++);
  busy.on('ping', () => pings.busy++);
  const stream = busy.request({ ':method': 'POST', ':path': '/' });
  stream.on('data', () => {});
  const sending = setInterval(() => stream.write(Buffer.alloc(10)), 100);
  await sleep(2000);
  clearInterval(sending);
  t.true(pings.idle >= 2, `the idle connection was pinged (${pings.idle} pings)`);
  t.is(pings.busy, 0, 'a connection the relay reads from is not pinged');
  t.false(idle.closed || idle.destroyed, 'an idle connection that answers is kept');
  t.false(busy.closed || busy.destroyed);
});

test('a VM connection from which nothing is read after a ping is closed after the timeout', async (t) => {
  const { port, closed } = await keepaliveServer(t);
  // A peer that sent the HTTP/2 preface and an empty SETTINGS frame, then went silent (a dead VM).
  const silent = net.connect(port, '127.0.0.1');
  t.teardown(() => silent.destroy());
  silent.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]));
  silent.on('data', () => {});
  const ended = new Promise<number>((resolve) => { const started = Date.now(); silent.on('close', () => resolve(Date.now() - started)); });
  const afterMs = await Promise.race([ended, sleep(5000).then(() => Number.POSITIVE_INFINITY)]);
  t.true(afterMs >= policy.keepaliveIntervalMs + policy.keepaliveTimeoutMs - 50, `not before interval + timeout (${afterMs} ms)`);
  t.true(afterMs < 3000, `closed once the ping went unanswered (${afterMs} ms)`);
  t.is(closed.length, 1);
});
