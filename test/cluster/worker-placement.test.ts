import test from 'ava';
import { ConnectionBalancer } from '../../src/cluster/connection-balancer.js';
import { cgroupCpuQuota } from '../../src/limits/cpu-limit.js';

const allAlive = () => true;

test('source-address: a client\'s connections land on one worker while it is not over 1.1× the mean; many from one address still spread', (t) => {
  const balancer = new ConnectionBalancer(4, 'source-address');
  // 400 VMs, each from its own address, connect; then each reconnects.
  const first = Array.from({ length: 400 }, (_, i) => balancer.pick(`10.0.${i >> 8}.${i & 255}`, allAlive)!);
  first.forEach((worker) => balancer.closed(worker));
  const again = Array.from({ length: 400 }, (_, i) => balancer.pick(`10.0.${i >> 8}.${i & 255}`, allAlive)!);
  const same = again.filter((worker, i) => worker === first[i]).length;
  t.true(same >= 380, `reconnects back on their worker: ${same}/400`);
  t.true(Math.max(...balancer.connections()) <= Math.ceil(1.1 * 100) + 1, `no worker over the bound: ${balancer.connections()}`);

  const gateway = new ConnectionBalancer(2, 'source-address');
  for (let i = 0; i < 1000; i++) gateway.pick('192.168.0.1', allAlive);
  const [a, b] = gateway.connections();
  t.true(Math.min(a!, b!) >= 450, `1,000 VMs behind one gateway address spread: ${a}/${b}`);
});

test('least-connections balances exactly; dead workers get nothing; a worker that exits holds none', (t) => {
  const balancer = new ConnectionBalancer(3, 'least-connections');
  for (let i = 0; i < 9; i++) balancer.pick('127.0.0.1', allAlive);
  t.deepEqual(balancer.connections(), [3, 3, 3]);
  for (let i = 0; i < 4; i++) balancer.pick('127.0.0.1', (index) => index !== 1);
  t.is(balancer.connections()[1], 3, 'a worker not alive is never picked');
  balancer.reset(0);
  t.is(balancer.connections()[0], 0);
  t.is(balancer.pick('127.0.0.1', () => false), undefined, 'no worker alive: none');
});

test('the CPU limit from cgroup files: v2 cpu.max, v1 CFS quota, rounded up, none when unlimited', (t) => {
  const files = (entries: Record<string, string>) => (file: string) => entries[file];
  t.is(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu.max': '200000 100000' })), 2);
  t.is(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu.max': '150000 100000' })), 2, 'a pod limit of 1500m gets 2 workers');
  t.is(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu.max': 'max 100000' })), undefined);
  t.is(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '50000', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' })), 1);
  t.is(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' })), undefined);
  t.is(cgroupCpuQuota(files({})), undefined);
});
