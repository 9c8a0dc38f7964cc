import test from 'ava';
import { acceptingWorkers } from '../../src/cluster/accept-governor.js';
import { ConnectionBalancer } from '../../src/cluster/connection-balancer.js';
import { acceptQueue, LISTEN_BACKLOG } from '../../src/limits/accept-queue.js';
import { planConnectionCapacity } from '../../src/limits/connection-capacity.js';
import { openFileLimit, RESERVED_FILES } from '../../src/limits/open-files.js';
import { ephemeralPorts, planFleet, sourceAddress } from '../../bench/xds/fleet-layout.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            20000                20000                files
Max locked memory         8388608              8388608              bytes
`;

test('the open-file limit is the soft RLIMIT_NOFILE of /proc/self/limits; unreadable or unlimited is planned as 1,048,576', (t) => {
  t.is(openFileLimit(() => LIMITS), 20_000);
  t.is(openFileLimit(() => LIMITS.replace('20000                20000', 'unlimited            unlimited')), 1_048_576);
  t.is(openFileLimit(() => { throw new Error('ENOENT'); }), 1_048_576);
  t.true(openFileLimit() > RESERVED_FILES, 'this machine\'s limit is read');
});

test('a pod runs a worker per core, and more where one process\'s open files cannot hold maxConnections', (t) => {
  const here = planConnectionCapacity({ cores: 2, openFileLimit: 20_000, maxConnections: 100_000 });
  t.is(here.workers, 6, '100k connections at 19,744 per process need 6 processes, though there are 2 cores');
  t.is(here.pod, 100_000);
  t.is(here.perProcess, 16_667);
  t.regex(here.reason, /^100,000 connections: 6 × 16,667 \(open-file limit 20,000 per process, 256 kept/);
  t.regex(here.reason, /6 workers for the open-file limit on 2 cores/);

  const unset = planConnectionCapacity({ cores: 2, openFileLimit: 20_000, maxConnections: 0 });
  t.deepEqual([unset.workers, unset.perProcess, unset.pod], [2, 19_744, 39_488], 'without maxConnections: what a worker per core can hold');

  const kubernetes = planConnectionCapacity({ cores: 4, openFileLimit: 1_048_576, maxConnections: 100_000 });
  t.deepEqual([kubernetes.workers, kubernetes.pod, kubernetes.perProcess], [4, 100_000, 25_000], 'a pod with a high nofile needs no extra workers');

  const pinned = planConnectionCapacity({ cores: 2, openFileLimit: 20_000, workers: 1, maxConnections: 100_000 });
  t.deepEqual([pinned.workers, pinned.pod], [1, 19_744], 'an explicit worker count caps the pod');
  t.regex(pinned.reason, /more than 1 workers can hold/);
});

test('a listener\'s accept queue is the backlog asked for, capped by net.core.somaxconn; a pod larger than it is told to raise it', (t) => {
  t.deepEqual(acceptQueue(() => '4096\n'), { length: 4096, limitedBy: 'somaxconn' });
  t.deepEqual(acceptQueue(() => '1048576\n'), { length: LISTEN_BACKLOG, limitedBy: 'backlog' }, 'a higher somaxconn: the backlog asked for is the queue');
  t.deepEqual(acceptQueue(() => { throw new Error('ENOENT'); }), { length: LISTEN_BACKLOG, limitedBy: 'backlog' });

  const capped = planConnectionCapacity({ cores: 2, openFileLimit: 20_000, maxConnections: 100_000, acceptQueue: { length: 4096, limitedBy: 'somaxconn' } });
  t.false(capped.acceptQueue.fitsPod);
  t.regex(capped.acceptQueue.note, /^4,096 per listener \(net\.core\.somaxconn\): a reconnect storm of more than 4,096 VMs at once overflows it .* raise net\.core\.somaxconn to 65,535/);

  const small = planConnectionCapacity({ cores: 2, openFileLimit: 20_000, maxConnections: 3_000, acceptQueue: { length: 4096, limitedBy: 'somaxconn' } });
  t.true(small.acceptQueue.fitsPod);
  t.is(small.acceptQueue.note, '4,096 per listener (net.core.somaxconn)', 'a pod whose whole storm fits says no more');
});

test('with kernel balance a worker stops accepting past 1.1× the mean (plus slack) or near its limit, and one always accepts', (t) => {
  t.deepEqual(acceptingWorkers([1000, 1000, 1000], 20_000), [true, true, true]);
  t.deepEqual(acceptingWorkers([2000, 1000, 1000], 20_000), [false, true, true], 'the kernel gave one worker a burst: it waits for the others');
  t.deepEqual(acceptingWorkers([19_700, 15_000, 15_000], 20_000), [false, true, true], 'near its limit (2 % headroom for the report lag)');
  t.deepEqual(acceptingWorkers([20_000, 20_000, 19_990], 20_000), [false, false, true], 'all full: the least loaded keeps the shared socket open and refuses past its limit');
  t.deepEqual(acceptingWorkers([], 10), []);
});

test('the hand-off balancer picks no worker that holds its share of the pod', (t) => {
  const balancer = new ConnectionBalancer(2, 'least-connections', 2);
  const alive = () => true;
  t.deepEqual([balancer.pick('127.0.0.1', alive), balancer.pick('127.0.0.1', alive), balancer.pick('127.0.0.1', alive), balancer.pick('127.0.0.1', alive)].sort(), [0, 0, 1, 1]);
  t.is(balancer.pick('127.0.0.1', alive), undefined, 'both full');
  balancer.closed(1);
  t.is(balancer.pick('127.0.0.1', alive), 1);
});

test('the bench spreads clients over enough processes for the open-file limit and enough source addresses for the port range', (t) => {
  t.is(ephemeralPorts(() => '32768\t60999\n'), 28_232);
  t.is(ephemeralPorts(() => 'garbage'), 28_232);
  t.deepEqual(planFleet(1000, {}, { openFiles: 20_000, ports: 28_232 }), { processes: 2, clientsPerAddress: 14_116, addresses: 1 });
  t.deepEqual(planFleet(100_000, {}, { openFiles: 20_000, ports: 28_232 }), { processes: 6, clientsPerAddress: 14_116, addresses: 8 });
  t.deepEqual(planFleet(100_000, { processes: 10, clientsPerAddress: 25_000 }, { openFiles: 20_000, ports: 28_232 }), { processes: 10, clientsPerAddress: 25_000, addresses: 4 });
  t.is(sourceAddress(0, 100), '127.0.1.1');
  t.is(sourceAddress(99, 100), '127.0.1.1');
  t.is(sourceAddress(100, 100), '127.0.1.2');
  t.is(sourceAddress(254 * 100, 100), '127.0.2.1', 'x.y.z.0 and .255 are skipped');
});
