import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { createCertificate, opensslCsr, opensslVerify } from '../helpers/ca-client.js';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

function run(args: string[]): { child: ChildProcess; stdout: Promise<string>; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MESHRELAY_LOG_LEVEL: 'warn' } });
  let out = '';
  child.stderr!.resume();
  const stdout = new Promise<string>((resolve) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('Point an ADS client') || out.includes('simulated istiod serving')) resolve(out);
    });
    child.on('exit', () => resolve(out));
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stdout, exit };
}

test('meshrelay serve (what npm start runs) serves the embedded istiod\'s config: all four types, ACKed, no resend, clean SIGTERM', async (t) => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'meshrelay-state-'));
  const { child, stdout, exit } = run(['serve', '--xds-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--shutdown-grace-seconds', '1', '--state-dir', stateDir]);
  t.teardown(() => child.kill('SIGKILL'));
  const printed = await stdout;
  const xds = /xDS \(plaintext ADS, SotW \+ Delta\):\s+(\S+)/.exec(printed)?.[1];
  const admin = /admin:\s+http:\/\/(\S+?)\//.exec(printed)?.[1];
  t.truthy(xds, printed);
  for (const protocol of ['sotw', 'delta'] as const) {
    const vm = new AdsTestClient(xds!, protocol);
    const ack = (r: any, names: string[] = []) => vm.send(protocol === 'sotw'
      ? { type_url: r.type_url, version_info: r.version_info, response_nonce: r.nonce, resource_names: names } as any
      : { type_url: r.type_url, response_nonce: r.nonce } as any);
    const subscribe = (typeUrl: string, names: string[], first = false) => vm.send((protocol === 'sotw'
      ? { ...(first ? { node: vmNode() } : {}), type_url: typeUrl, resource_names: names }
      : { ...(first ? { node: vmNode() } : {}), type_url: typeUrl, resource_names_subscribe: names }) as any);
    subscribe(TypeUrl.cluster, [], true);
    // The first answer waits on a fresh process and its embedded istiod: generous on a loaded machine.
    const cds: any = await vm.next(20_000);
    ack(cds);
    subscribe(TypeUrl.endpoint, ['outbound|8000||httpbin.bar.svc.cluster.local']);
    const eds: any = await vm.next();
    ack(eds, ['outbound|8000||httpbin.bar.svc.cluster.local']);
    subscribe(TypeUrl.listener, []);
    const lds: any = await vm.next();
    ack(lds);
    subscribe(TypeUrl.route, ['8000']);
    const rds: any = await vm.next();
    ack(rds, ['8000']);
    t.deepEqual([cds, eds, lds, rds].map((r) => r.type_url), [TypeUrl.cluster, TypeUrl.endpoint, TypeUrl.listener, TypeUrl.route], protocol);
    t.true([cds, eds, lds, rds].every((r) => r.resources.length > 0), protocol);
    t.true(await vm.quietFor(300), `${protocol}: no resend after ACKs`);
    vm.close();
  }
  const ready = await fetch(`http://${admin}/readyz`);
  t.is(ready.status, 200);
  child.kill('SIGTERM');
  t.is(await exit, 0);
});

test('npm start\'s relay signs a CSR sent with a dev token: openssl verifies the chain against the printed root, for the token\'s identity', async (t) => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'meshrelay-state-'));
  const { child, stdout } = run(['serve', '--xds-listen', '127.0.0.1:0', '--admin-listen', '', '--state-dir', stateDir]);
  t.teardown(() => child.kill('SIGKILL'));
  const printed = await stdout;
  const xds = /xDS \(plaintext ADS, SotW \+ Delta\):\s+(\S+)/.exec(printed)![1]!;
  const rootFile = /root certificate (\S+)/.exec(printed)?.[1];
  t.is(rootFile, path.join(stateDir, 'ca', 'root-cert.pem'));
  const token = execFileSync(process.execPath, [cli, 'token', '--namespace', 'vm', '--service-account', 'vm-sa', '--state-dir', stateDir], { encoding: 'utf8' }).trim();
  const client = new grpc.Client(xds, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const chain = await createCertificate(client, opensslCsr('rsa-2048').csr, { authorization: `Bearer ${token}` });
  t.regex(opensslVerify(chain, rootFile), /OK/);
  t.is(new X509Certificate(chain[0]!).subjectAltName, 'URI:spiffe://cluster.local/ns/vm/sa/vm-sa');
});

test('meshrelay sim-istiod serves ADS on its own', async (t) => {
  const { child, stdout } = run(['sim-istiod', '--listen', '127.0.0.1:0']);
  t.teardown(() => child.kill('SIGKILL'));
  const address = /on (\S+):/.exec(await stdout)?.[1];
  const vm = new AdsTestClient(address!, 'delta');
  t.teardown(() => vm.close());
  vm.send({ node: vmNode(), type_url: TypeUrl.cluster });
  t.true((await vm.next(20_000)).resources.length > 0);
});

test('a bad flag exits with status 2 and says which flag', async (t) => {
  const child = spawn(process.execPath, [cli, 'serve', '--mode', 'sideways'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const code = await new Promise((resolve) => child.on('exit', resolve));
  t.is(code, 2);
  t.regex(stderr, /invalid mode/);
});
