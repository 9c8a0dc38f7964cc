import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

function bench(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, 'bench', ...args], { maxBuffer: 16 << 20, timeout: 240_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

test('meshrelay bench --compare runs identical simulated VMs against direct, group, stream and the raw baseline, and every VM ends with the right config', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'meshrelay-bench-test-'));
  const json = path.join(dir, 'out.json');
  const html = path.join(dir, 'out.html');
  const result = await bench(['--clients', '24', '--groups', '3', '--workers', '2', '--compare', '--nack-fraction', '0.1',
    '--churn-rate', '10', '--churn-seconds', '1', '--timeout-seconds', '60', '--json', json, '--report', html]);
  t.is(result.code, 0, result.stderr.slice(-2000));
  const report = JSON.parse(readFileSync(json, 'utf8'));
  t.deepEqual(report.results.map((r: any) => r.target), ['direct', 'group', 'stream', 'baseline']);
  for (const r of report.results) {
    t.deepEqual(r.correctness, { checked: 24, matching: 24, expectedHashes: 1 }, r.target);
    t.is(r.phases.connect.complete, 24, `${r.target}: all configured`);
    t.is(r.phases.eds.complete, 24, `${r.target}: all got the EDS update`);
    t.is(r.phases.bulk.complete, 24, `${r.target}: all got the bulk EDS update`);
    t.true(r.phases.bulk.updateBytes > 1024);
    t.is(r.phases.eds.receive.count >= 24, true);
    t.true(r.nacksSent > 0, `${r.target}: the NACKing VMs NACKed`);
    t.true(r.phases.connect.serverCpuSeconds > 0);
  }
  const [, group, stream] = report.results;
  // Group mode: one upstream stream per group in each worker process; stream mode: one per VM.
  t.true(group.server.workers >= 1);
  t.is(group.upstream.streams, 3 * group.server.workers);
  t.is(stream.upstream.streams, 24);
  // Each upstream stream serves 24 ÷ streams VMs; at least half of that fan-out shows in the bytes.
  t.true(group.downstreamBytes / group.upstream.bytesReceived > 0.5 * (24 / group.upstream.streams), 'group mode fans one upstream byte out to many VMs');
  // The VMs' ADS streams survive an upstream restart behind the relay; direct VMs reconnect.
  t.is(group.phases['upstream-restart'].reconnects, 0);
  t.true(report.results[0].phases['upstream-restart'].reconnects >= 24);
  t.regex(result.stdout, /group ÷ baseline/);
  t.regex(result.stdout, /stream: correctness 24\/24 VMs match the reference ✔/);
  const page = readFileSync(html, 'utf8');
  t.is((page.match(/<svg /g) ?? []).length, 2, 'two CDF plots');
  t.notRegex(page, /https?:\/\/(?!www\.w3\.org)/, 'no network needed to view it');
});

test('meshrelay bench --target measures an already running relay (npm start) through its admin port', async (t) => {
  const relay = spawn(process.execPath, [cli, 'serve', '--xds-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--ca-mode', 'off', '--log-level', 'error',
    '--state-dir', mkdtempSync(path.join(tmpdir(), 'meshrelay-bench-target-'))], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => relay.kill());
  const out = await new Promise<string>((resolve) => {
    let text = '';
    relay.stdout!.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (/upstream:/.test(text)) resolve(text);
    });
  });
  const target = /xDS \(plaintext ADS, SotW \+ Delta\):\s+(\S+)/.exec(out)![1]!;
  const adminUrl = /admin:\s+(http:\/\/[^/\s]+)/.exec(out)![1]!;
  const result = await bench(['--target', target, '--admin-url', adminUrl, '--clients', '20', '--groups', '2', '--timeout-seconds', '60']);
  t.is(result.code, 0, result.stderr.slice(-2000));
  t.regex(result.stdout, /external: correctness 20\/20 VMs match the reference ✔/);
  // npm start runs a worker per core, each with its own upstream stream per group it has VMs of.
  const workers = Number(/workers:\s+(\d+)/.exec(out)![1]);
  const streams = Number(/upstream streams \(streaming\)\s+\|\s+(\d+)\s/.exec(result.stdout)?.[1]);
  t.true(streams >= 2 && streams <= 2 * workers, `${streams} upstream streams for 2 groups on ${workers} workers`);
  t.regex(result.stdout, /idle server memory per VM/);
});

test('meshrelay bench --upstream-target --compare puts direct VMs and both relay modes in front of an upstream it did not start, reading its CPU and memory', async (t) => {
  // A stand-in for a real istiod (docs/BENCHMARKS.md runs this against pilot-discovery): its own process.
  const upstream = spawn(process.execPath, [cli, 'sim-istiod', '--listen', '127.0.0.1:0', '--log-level', 'error'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => upstream.kill());
  const address = await new Promise<string>((resolve) => {
    let text = '';
    upstream.stdout!.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const match = /serving ADS \(SotW \+ Delta\) on (\S+):/.exec(text);
      if (match) resolve(match[1]!);
    });
  });
  const dir = mkdtempSync(path.join(tmpdir(), 'meshrelay-bench-upstream-'));
  const json = path.join(dir, 'out.json');
  const result = await bench(['--upstream-target', address, '--upstream-pid', String(upstream.pid), '--compare', '--clients', '20', '--groups', '2',
    '--timeout-seconds', '60', '--json', json]);
  t.is(result.code, 0, result.stderr.slice(-2000));
  t.regex(result.stderr, /only the connect storm runs/);
  const report = JSON.parse(readFileSync(json, 'utf8'));
  t.deepEqual(report.results.map((r: any) => r.target), ['direct', 'group', 'stream'], 'no baseline: it cannot replay an upstream it did not start');
  for (const r of report.results) {
    t.deepEqual(r.correctness, { checked: 20, matching: 20, expectedHashes: 1 }, r.target);
    t.deepEqual(Object.keys(r.phases), ['connect']);
    t.is(typeof r.phases.connect.upstreamCpuSeconds, 'number', `${r.target}: the upstream's CPU is read from /proc`);
    t.true(r.server.upstreamIdleRssBytes > 0);
  }
  const [direct, group, stream] = report.results;
  t.true(direct.phases.connect.upstreamCpuSeconds > 0, '20 direct VMs cost the upstream CPU');
  t.is(direct.upstream, undefined);
  // No kubeconfig for the upstream's API server: the relay cannot see what it binds to VM
  // addresses, so each address is its own group (docs/ADDRESS-BINDING.md).
  t.is(group.upstream.streams, 20);
  t.is(stream.upstream.streams, 20);
  t.regex(result.stdout, /connect: upstream \(istiod\) CPU/);
  t.regex(result.stdout, /group ÷ direct/);
});

test('meshrelay bench attack: slow readers past a small buffer budget are ended RESOURCE_EXHAUSTED while the healthy VM keeps getting EDS and new VMs are configured', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'meshrelay-attack-test-'));
  const json = path.join(dir, 'out.json');
  const result = await bench(['attack', '--attacks', 'slow-readers', '--streams', '40', '--hold-seconds', '2', '--endpoints-per-service', '8',
    '--serve-args=--max-buffered-mb 1', '--json', json]);
  t.is(result.code, 0, result.stderr.slice(-2000));
  t.regex(result.stdout, /\| slow-readers \|/);
  const [run] = JSON.parse(readFileSync(json, 'utf8')).results;
  t.true((run.outcomes['RST ENHANCE_YOUR_CALM (RESOURCE_EXHAUSTED)'] ?? 0) > 0, JSON.stringify(run.outcomes));
  t.true(run.healthyUpdates > 0, 'the healthy VM got EDS updates during the attack');
  t.is(run.probes.failed, 0);
  t.true(run.probes.ok > 0);
});
