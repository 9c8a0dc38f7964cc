import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { vmNode } from '../helpers/ads-client.js';
import { eventually } from '../helpers/harness.js';
import { freePort } from '../../bench/free-port.js';
import { repositoryRoot } from '../helpers/kubectl.js';
import { ConfigProxy } from '../helpers/proxy-config.js';

const run = promisify(execFile);
const buildah = ['/usr/bin/buildah', '/usr/local/bin/buildah'].find((candidate) => existsSync(candidate));
const unavailable = !buildah ? 'no buildah (Debian package "buildah"; .ci/run installs it where apt-get can)'
  : process.getuid?.() !== 0 ? 'building an image from scratch needs root' : undefined;
const imageTest = unavailable ? test.skip : test.serial;
if (unavailable) test('container image', (t) => t.log(`skipped: ${unavailable}`));

const storage = ['--storage-driver', 'vfs'];

imageTest('the image builds without a daemon or a registry, runs as 65532, and its own tree serves a VM', async (t) => {
  t.timeout(300_000);
  const image = `localhost/meshrelay:test-${process.pid}`;
  const built = await run('bash', ['scripts/build-image.sh', image], { cwd: repositoryRoot, timeout: 240_000 });
  t.log(built.stdout.trim());
  t.teardown(() => run(buildah!, [...storage, 'rmi', image]).catch(() => undefined));
  const inspected = JSON.parse((await run(buildah!, [...storage, 'inspect', '--type', 'image', image])).stdout).OCIv1;
  t.like(inspected.config, { User: '65532:65532', Entrypoint: ['/usr/bin/node', '/app/dist/src/cli/main.js'], Cmd: ['serve', '--config', '/etc/meshrelay/config.yaml'] });
  t.true(Object.keys(inspected.config.ExposedPorts ?? {}).some((port) => port.startsWith('15012')), JSON.stringify(inspected.config.ExposedPorts));
  t.true((inspected.config.Env ?? []).includes('MALLOC_MMAP_THRESHOLD_=1048576'), 'the allocator returns freed large blocks, as in the Dockerfile');

  // The OCI runtime cannot start containers on this machine (crun: setrlimit is not permitted,
  // cgroups in hybrid mode), so the image's own root filesystem is run with chroot as its user:
  // its Node, its libraries, its node_modules and nothing of the host's — mounted read-only, with
  // tmpfs for the state directory and /tmp as the Deployment gives it (readOnlyRootFilesystem).
  const container = (await run(buildah!, [...storage, 'from', image])).stdout.trim();
  const layers = (await run(buildah!, [...storage, 'mount', container])).stdout.trim();
  const root = mkdtempSync(path.join(tmpdir(), 'meshrelay-image-root-'));
  await run('mount', ['--bind', layers, root]);
  await run('mount', ['-o', 'remount,ro,bind', root]);
  await run('mount', ['-t', 'tmpfs', '-o', 'size=64m,uid=65532,gid=65532', 'tmpfs', path.join(root, 'var/lib/meshrelay')]);
  await run('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=1777', 'tmpfs', path.join(root, 'tmp')]);
  t.teardown(async () => {
    for (const mount of ['tmp', 'var/lib/meshrelay', '']) await run('umount', ['-l', path.join(root, mount)]).catch((error: Error) => console.error('umount', mount, error.message));
    await run(buildah!, [...storage, 'rm', container]).catch(() => undefined);
  });
  await t.throwsAsync(run('chroot', ['--userspec=65532:65532', root, '/usr/bin/node', '-e', 'require("fs").writeFileSync("/app/x", "")']), undefined, 'the root filesystem is read-only');
  const [xds, admin] = [await freePort(), await freePort()];
  const relay = spawn('/usr/sbin/chroot', ['--userspec=65532:65532', root, '/usr/bin/node', '/app/dist/src/cli/main.js', 'serve',
    '--xds-listen', `127.0.0.1:${xds}`, '--admin-listen', `127.0.0.1:${admin}`, '--state-dir', '/var/lib/meshrelay', '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: '/usr/bin' } });
  let stderr = '';
  relay.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  t.teardown(async () => {
    relay.kill();
    if (relay.exitCode === null) await new Promise((resolve) => relay.once('exit', resolve));
  });
  const ready = await eventually(() => fetch(`http://127.0.0.1:${admin}/readyz`).then((r) => r.status, () => 0), (status) => status === 200 || relay.exitCode !== null, 30_000);
  t.is(ready, 200, stderr);
  const vm = new ConfigProxy(`127.0.0.1:${xds}`, 'delta', vmNode());
  t.teardown(() => vm.close());
  const config = await vm.settled(500, 15_000);
  t.true((config.get(TypeUrl.cluster)?.size ?? 0) > 0, 'the relay in the image served a VM from its embedded simulated istiod');
  const health = await (await fetch(`http://127.0.0.1:${admin}/healthz`)).json() as { pid: number };
  const status = await run('cat', [`/proc/${health.pid}/status`]);
  t.regex(status.stdout, /^Uid:\s+65532\b/m, 'it runs as the image\'s user');
});
