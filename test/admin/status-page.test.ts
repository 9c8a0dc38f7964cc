import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { AdsTestClient, vmNode } from '../helpers/ads-client.js';
import { startRelay, startSim } from '../helpers/harness.js';
import { ConfigProxy } from '../helpers/proxy-config.js';

const chromium = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((candidate) => existsSync(candidate));
const browserTest = chromium ? test : test.skip;
if (!chromium) test('status page in a browser', (t) => t.log('skipped: no Chromium (Debian package "chromium"; .ci/run installs it where apt-get can)'));

/** Headless Chromium, as a person's browser would load the page: the DOM it built, and a screenshot. */
async function inChromium(url: string, screenshot?: string): Promise<string> {
  const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--hide-scrollbars', '--window-size=1280,1100'];
  if (screenshot) await promisify(execFile)(chromium!, [...flags, `--screenshot=${screenshot}`, url], { timeout: 60_000 });
  return (await promisify(execFile)(chromium!, [...flags, '--dump-dom', url], { timeout: 60_000, maxBuffer: 8 << 20 })).stdout;
}

/** The visible text of each table row in a section (h2 … next h2), cells joined by " | ". */
function rowsOf(dom: string, heading: string): string[] {
  const start = dom.indexOf(`<h2>${heading}`);
  const section = dom.slice(start, dom.indexOf('<h2>', start + 4) === -1 ? undefined : dom.indexOf('<h2>', start + 4));
  return [...section.matchAll(/<tr>(.*?)<\/tr>/gs)].map((row) => [...row[1]!.matchAll(/<t[dh]>(.*?)<\/t[dh]>/gs)]
    .map((cell) => cell[1]!.replace(/<br>/g, ' ').replace(/<[^>]+>/g, '').replace(/&#(\d+);/g, (_, code) => String.fromCharCode(Number(code))).replace(/\s+/g, ' ').trim()).join(' | '));
}

browserTest('the status page on the admin port shows, in a real browser, the upstream, groups with their members, each VM\'s sync state per type and its last NACK, and the CA', async (t) => {
  const sim = await startSim();
  const relay = await startRelay({ upstream: sim.target, caMode: 'local', stateDir: mkdtempSync(path.join(tmpdir(), 'status-page-')) });
  t.teardown(async () => {
    await relay.stop();
    await sim.close();
  });
  const synced = new ConfigProxy(relay.target, 'delta', vmNode({ name: 'vm-synced' }));
  t.teardown(() => synced.close());
  await synced.settled(500);
  const nacking = new AdsTestClient(relay.target, 'sotw');
  t.teardown(() => nacking.close());
  nacking.send({ node: vmNode({ name: 'vm-nacking', ip: '172.16.0.9' }), type_url: TypeUrl.cluster });
  const cds = await nacking.next();
  nacking.send({ type_url: TypeUrl.cluster, response_nonce: cds.nonce, version_info: '', error_detail: { code: 13, message: 'cluster rejected by the test' } });
  await new Promise((resolve) => setTimeout(resolve, 200));

  const screenshot = path.join(mkdtempSync(path.join(tmpdir(), 'status-shot-')), 'status-page.png');
  const dom = await inChromium(`${relay.adminUrl}/`, screenshot);
  t.true(statSync(screenshot).size > 10_000, 'Chromium rendered a screenshot of the page');
  t.regex(dom, /<meta http-equiv="refresh" content="5">/, 'it refreshes itself');
  t.false(/<(script|link|img)\b/.test(dom), 'no external assets (and no script)');

  const upstream = rowsOf(dom, 'Upstream');
  t.true(upstream.includes(`upstream | ${sim.target}`));
  t.true(upstream.includes('ready | READY'));
  const vms = rowsOf(dom, 'VMs');
  const syncedRow = vms.find((row) => row.startsWith(vmNode({ name: 'vm-synced' }).id!));
  for (const type of ['CDS', 'EDS', 'LDS', 'RDS']) t.true((syncedRow ?? '').includes(`${type} SYNCED`), `${type} in ${syncedRow}`);
  const nackingRow = vms.find((row) => row.includes('vm-nacking'));
  t.regex(nackingRow ?? '', /CDS ERROR/, nackingRow);
  t.regex(nackingRow ?? '', /CDS: cluster rejected by the test/);
  const groups = rowsOf(dom, 'Groups');
  t.true(groups.some((row) => row.includes('SERVING') && row.includes('STREAMING') && row.includes('vm-synced')), groups.join('\n'));
  const ca = rowsOf(dom, 'CA');
  t.true(ca.includes('mode | local'));
  t.true(ca.some((row) => row.startsWith('root expires | 20')));
});
