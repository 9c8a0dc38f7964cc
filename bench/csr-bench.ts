import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import forge from 'node-forge';
import { loadCaBundle } from '../src/ca/ca-bundle.js';
import { createDevCa, type CaKeyType } from '../src/ca/dev-ca.js';
import { DEV_ISSUER, ensureDevTokenIssuer, mintDevToken } from '../src/ca/dev-token-issuer.js';
import { CreateCertificateMethod } from '../src/ca/ca-forwarder.js';
import { Oid, issueCertificate, parseCsr, type Issuer } from '../src/ca/x509.js';
import { messageType } from '../src/xds/protocol/protos.js';
import { makeCsr } from './csr-factory.js';
import { cpuSeconds, pinToCpus } from './process-stats.js';
import { startRelayProcess } from './relay-process.js';
import { summarize, table, type LatencySummary } from './stats.js';

export interface CsrBenchOptions {
  concurrency: number;
  seconds: number;
  caKeys: CaKeyType[];
  /** The workload key type in the CSRs (istio-agent's default is RSA-2048). */
  csrKey: 'rsa-2048' | 'ec-p256';
  /** Where the relay process writes a V8 CPU profile ('' = none). */
  relayCpuProfileDir: string;
  /** The relay's worker processes, and CPU lists (taskset -c) for it and for this process's clients. */
  relayWorkers: number;
  relayCpus: string;
  clientCpus: string;
}

export interface EndToEndResult {
  caKey: CaKeyType;
  csrKey: string;
  concurrency: number;
  csrs: number;
  errors: number;
  csrPerSecond: number;
  relayCpuSeconds: number;
  csrPerRelayCpuSecond: number;
  latencyMs: LatencySummary;
}

export interface SigningPathResult {
  path: 'native crypto.sign' | 'node-forge only';
  caKey: CaKeyType;
  certificates: number;
  perSecond: number;
}

function encodeRequest(csr: string): Buffer {
  const type = messageType('istio.v1.auth.IstioCertificateRequest');
  return Buffer.from(type.encode(type.fromObject({ csr, validity_duration: 0 })).finish());
}

/** `concurrency` requests in flight for `seconds` over a few connections; latency per request. */
async function endToEnd(caKey: CaKeyType, options: CsrBenchOptions): Promise<EndToEndResult> {
  const base = mkdtempSync(path.join(tmpdir(), 'meshrelay-bench-csr-'));
  try {
    createDevCa(path.join(base, 'ca'), { keyType: caKey });
    const issuer = ensureDevTokenIssuer(path.join(base, 'issuer'));
    const relay = await startRelayProcess(['--ca-mode', 'local', '--ca-dir', path.join(base, 'ca'), '--jwks-file', issuer.jwksFile, '--jwt-issuers', DEV_ISSUER,
      '--admin-listen', '', '--state-dir', base, '--workers', String(options.relayWorkers)], { cpuProfileDir: options.relayCpuProfileDir, cpus: options.relayCpus });
    pinToCpus(process.pid, options.clientCpus);
    const clients = Array.from({ length: 4 }, () => new grpc.Client(relay.address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
    const requests = Array.from({ length: 16 }, () => encodeRequest(makeCsr(options.csrKey)));
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${mintDevToken(issuer, 'bench', 'bench-sa', 3600)}`);
    const identity = (b: Buffer) => b;
    const call = (client: grpc.Client, request: Buffer) => new Promise<void>((resolve, reject) => {
      client.makeUnaryRequest(CreateCertificateMethod, identity, identity, request, metadata, { deadline: Date.now() + 30_000 }, (error) => (error ? reject(error) : resolve()));
    });
    // Warm up connections and the JIT before measuring.
    await Promise.all(Array.from({ length: 200 }, (_, i) => call(clients[i % clients.length]!, requests[i % requests.length]!)));
    const latencies: number[] = [];
    let errors = 0;
    let sent = 0;
    const cpuBefore = cpuSeconds(relay.pid);
    const started = performance.now();
    const deadline = started + options.seconds * 1000;
    const worker = async (index: number) => {
      while (performance.now() < deadline) {
        const n = sent++;
        const begin = performance.now();
        try {
          await call(clients[index % clients.length]!, requests[n % requests.length]!);
          latencies.push(performance.now() - begin);
        } catch {
          errors++;
        }
      }
    };
    await Promise.all(Array.from({ length: options.concurrency }, (_, i) => worker(i)));
    const elapsed = (performance.now() - started) / 1000;
    const relayCpuSeconds = cpuSeconds(relay.pid) - cpuBefore;
    for (const client of clients) client.close();
    await relay.stop();
    return {
      caKey, csrKey: options.csrKey, concurrency: options.concurrency, csrs: latencies.length, errors,
      csrPerSecond: latencies.length / elapsed,
      relayCpuSeconds,
      csrPerRelayCpuSecond: latencies.length / relayCpuSeconds,
      latencyMs: summarize(latencies),
    };
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}

/** The signing path alone, in this process: native signatures vs node-forge's pure-JS RSA. */
function signingPaths(caKey: CaKeyType, seconds: number): SigningPathResult[] {
  const base = mkdtempSync(path.join(tmpdir(), 'meshrelay-bench-sign-'));
  try {
    createDevCa(base, { keyType: caKey });
    const bundle = loadCaBundle(base);
    const csr = parseCsr(makeCsr('ec-p256'));
    const template = {
      subject: [], spki: csr.spki, isCa: false, keyUsage: ['digitalSignature', 'keyEncipherment'] as const,
      extendedKeyUsage: [Oid.serverAuth, Oid.clientAuth], uris: ['spiffe://cluster.local/ns/bench/sa/bench-sa'],
    };
    const run = (pathName: SigningPathResult['path'], issuer: Issuer): SigningPathResult => {
      let certificates = 0;
      const started = performance.now();
      while (performance.now() - started < seconds * 1000) {
        const now = Date.now();
        issueCertificate({ ...template, keyUsage: [...template.keyUsage], notBefore: new Date(now), notAfter: new Date(now + 86_400_000) }, issuer);
        certificates++;
      }
      return { path: pathName, caKey, certificates, perSecond: certificates / ((performance.now() - started) / 1000) };
    };
    const results = [run('native crypto.sign', bundle.issuer)];
    if (caKey.startsWith('rsa')) {
      const forgeKey = forge.pki.privateKeyFromPem(createPrivateKey(readFileSync(path.join(base, 'ca-key.pem'))).export({ type: 'pkcs1', format: 'pem' }).toString());
      const forgeIssuer: Issuer = {
        ...bundle.issuer,
        signTbs: (tbs) => {
          const digest = forge.md.sha256.create();
          digest.update(tbs.toString('binary'));
          return Buffer.from(forgeKey.sign(digest), 'binary');
        },
      };
      results.push(run('node-forge only', forgeIssuer));
    }
    return results;
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}

export async function runCsrBench(options: CsrBenchOptions): Promise<{ endToEnd: EndToEndResult[]; signing: SigningPathResult[]; report: string }> {
  const endToEndResults: EndToEndResult[] = [];
  const signing: SigningPathResult[] = [];
  for (const caKey of options.caKeys) {
    process.stderr.write(`bench csr: ${caKey} CA, ${options.concurrency} concurrent, ${options.seconds}s through the relay...\n`);
    endToEndResults.push(await endToEnd(caKey, options));
    process.stderr.write(`bench csr: ${caKey} CA, signing path alone...\n`);
    signing.push(...signingPaths(caKey, Math.min(5, options.seconds)));
  }
  const fixed = (n: number, digits = 0) => n.toFixed(digits);
  const report = [
    `Through the relay (gRPC CreateCertificate, ${options.csrKey} CSRs, ES256 dev JWT; relay in its own process, load from this one):`,
    table(['CA key', 'concurrent', 'CSRs', 'errors', 'CSR/s', 'relay CPU s', 'CSR per relay CPU-s', 'p50 ms', 'p99 ms', 'max ms'],
      endToEndResults.map((r) => [r.caKey, r.concurrency, r.csrs, r.errors, fixed(r.csrPerSecond), fixed(r.relayCpuSeconds, 2), fixed(r.csrPerRelayCpuSecond), fixed(r.latencyMs.p50, 1), fixed(r.latencyMs.p99, 1), fixed(r.latencyMs.max, 1)])),
    '',
    'Certificate building and signing alone (one core, in-process):',
    table(['CA key', 'signing path', 'certificates', 'per second'], signing.map((r) => [r.caKey, r.path, r.certificates, fixed(r.perSecond)])),
    ...options.caKeys.filter((key) => key.startsWith('rsa')).map((key) => {
      const native = signing.find((r) => r.caKey === key && r.path === 'native crypto.sign')!;
      const forgeOnly = signing.find((r) => r.caKey === key && r.path === 'node-forge only')!;
      return `${key}: native is ${(native.perSecond / forgeOnly.perSecond).toFixed(0)}x the node-forge-only path`;
    }),
  ].join('\n');
  return { endToEnd: endToEndResults, signing, report };
}
