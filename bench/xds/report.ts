import { table } from '../stats.js';
import type { PhaseResult, Scenario, TargetResult, XdsBenchOptions } from './xds-bench-types.js';

type Row = [string, (r: TargetResult) => number | undefined, 'ms' | 's' | 'count' | 'KiB' | 'MiB' | 'µs' | 'ratio' | '%'];

const phase = (r: TargetResult, name: Scenario): PhaseResult | undefined => r.phases[name];
const MiB = 1024 * 1024;

function rowsFor(clients: number, link: XdsBenchOptions['link']): Row[] {
  // toxiproxy caps each connection on its own; VMs connected straight across one shared link would
  // share its rate, so this is how long the link needs for the bytes at least.
  const atLinkRate = (bytes: number | undefined) => (bytes === undefined || !link?.shape.bandwidthKBps ? undefined : bytes / (link.shape.bandwidthKBps * 1000));
  const perVm = (cpuSeconds: number | undefined) => (cpuSeconds === undefined ? undefined : (cpuSeconds * 1e6) / clients);
  return [
    ['connect storm: all VMs fully configured', (r) => phase(r, 'connect')?.totalMs, 'ms'],
    ['time to full config p50', (r) => phase(r, 'connect')?.timeToConfig?.p50, 'ms'],
    ['time to full config p99', (r) => phase(r, 'connect')?.timeToConfig?.p99, 'ms'],
    ['time to full config max', (r) => phase(r, 'connect')?.timeToConfig?.max, 'ms'],
    ['connect: server CPU per VM', (r) => perVm(phase(r, 'connect')?.serverCpuSeconds), 'µs'],
    ['connect: upstream (istiod) CPU', (r) => phase(r, 'connect')?.upstreamCpuSeconds, 's'],
    ['connect: upstream (istiod) peak RSS', (r) => mib(phase(r, 'connect')?.upstreamPeakRssBytes), 'MiB'],
    ['idle upstream (istiod) RSS', (r) => mib(r.server.upstreamIdleRssBytes), 'MiB'],
    ['idle server memory per VM', (r) => r.server.idleRssPerVmKiB, 'KiB'],
    ['idle server RSS', (r) => (r.server.idleRssBytes === undefined ? undefined : r.server.idleRssBytes / MiB), 'MiB'],
    ['1-endpoint EDS: all VMs have it', (r) => phase(r, 'eds')?.totalMs, 'ms'],
    ['1-endpoint EDS: receive p50', (r) => phase(r, 'eds')?.receive?.p50, 'ms'],
    ['1-endpoint EDS: receive p99', (r) => phase(r, 'eds')?.receive?.p99, 'ms'],
    ['1-endpoint EDS: receive max', (r) => phase(r, 'eds')?.receive?.max, 'ms'],
    ['1-endpoint EDS: ACK p99', (r) => phase(r, 'eds')?.ack?.p99, 'ms'],
    ['1-endpoint EDS: server CPU per stream', (r) => perVm(phase(r, 'eds')?.serverCpuSeconds), 'µs'],
    ['bulk EDS update: size', (r) => kib(phase(r, 'bulk')?.updateBytes), 'KiB'],
    ['bulk EDS update: all VMs have it', (r) => phase(r, 'bulk')?.totalMs, 'ms'],
    ['bulk EDS update: receive p99', (r) => phase(r, 'bulk')?.receive?.p99, 'ms'],
    ['bulk EDS update: peak RSS over idle', (r) => growth(phase(r, 'bulk')?.serverPeakRssBytes, r.server.idleRssBytes), '%'],
    ['CDS push: all VMs have it', (r) => phase(r, 'cds')?.totalMs, 'ms'],
    ['CDS push: receive p99', (r) => phase(r, 'cds')?.receive?.p99, 'ms'],
    ['CDS push: server peak RSS', (r) => mib(phase(r, 'cds')?.serverPeakRssBytes), 'MiB'],
    ['churn: receive p50', (r) => phase(r, 'churn')?.receive?.p50, 'ms'],
    ['churn: receive p99', (r) => phase(r, 'churn')?.receive?.p99, 'ms'],
    ['churn: server CPU', (r) => phase(r, 'churn')?.serverCpuSeconds, 's'],
    ['upstream restart: change after restart reaches all', (r) => phase(r, 'upstream-restart')?.totalMs, 'ms'],
    ['upstream restart: VM reconnects', (r) => phase(r, 'upstream-restart')?.reconnects, 'count'],
    ['reconnect storm: all back and current', (r) => phase(r, 'reconnect')?.totalMs, 'ms'],
    ['reconnect storm: bytes to VMs', (r) => mib(phase(r, 'reconnect')?.bytesReceived), 'MiB'],
    ['reconnect storm: bytes from istiod', (r) => mib(phase(r, 'reconnect')?.upstreamBytes), 'MiB'],
    ['reconnect storm: server CPU per VM', (r) => perVm(phase(r, 'reconnect')?.serverCpuSeconds), 'µs'],
    ['link: bytes to the edge, connect storm', (r) => kib(phase(r, 'connect')?.linkBytes), 'KiB'],
    ['link: connect storm bytes at the link rate', (r) => atLinkRate(phase(r, 'connect')?.linkBytes), 's'],
    ['link: bytes to the edge, churn', (r) => kib(phase(r, 'churn')?.linkBytes), 'KiB'],
    ['link cut: last change reaches all after the heal', (r) => phase(r, 'link-cut')?.totalMs, 'ms'],
    ['link cut: VM reconnects', (r) => phase(r, 'link-cut')?.reconnects, 'count'],
    ['link cut: bytes to the edge (cut and heal)', (r) => kib(phase(r, 'link-cut')?.linkBytes), 'KiB'],
    ['upstream streams (streaming)', (r) => r.upstream?.streams, 'count'],
    ['upstream streams (reconnecting or idle)', (r) => r.upstream?.notStreaming, 'count'],
    ['upstream streams lingering without a VM', (r) => r.upstream?.lingering, 'count'],
    ['upstream bytes', (r) => mib(r.upstream?.bytesReceived), 'MiB'],
    ['downstream bytes', (r) => mib(r.downstreamBytes), 'MiB'],
    ['downstream ÷ upstream bytes', (r) => (r.upstream && r.upstream.bytesReceived > 0 ? r.downstreamBytes / r.upstream.bytesReceived : undefined), 'ratio'],
    ['NACKs sent by VMs', (r) => r.nacksSent, 'count'],
    ['relay worker processes', (r) => r.server.workers, 'count'],
    ['load generator: longest event-loop delay', (r) => r.loadGeneratorLoopDelayMaxMs, 'ms'],
    ['errors', (r) => Object.values(r.phases).reduce((sum, p) => sum + (p?.errors ?? 0), 0), 'count'],
    ['correct final config (VMs)', (r) => r.correctness.matching, 'count'],
  ];
}
function kib(bytes: number | undefined): number | undefined {
  return bytes === undefined ? undefined : bytes / 1024;
}
function growth(peak: number | undefined, idle: number | undefined): number | undefined {
  return peak === undefined || !idle ? undefined : ((peak - idle) / idle) * 100;
}
function mib(bytes: number | undefined): number | undefined {
  return bytes === undefined ? undefined : bytes / MiB;
}

function format(value: number | undefined, unit: Row[2]): string {
  if (value === undefined || Number.isNaN(value)) return '–';
  if (unit === 'count') return String(Math.round(value));
  // Small ratios (bytes through an edge relay ÷ direct) read better as a fraction.
  if (unit === 'ratio' && value > 0 && value < 0.05) return `1/${Math.round(1 / value)}`;
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return `${value.toFixed(digits)}${unit === 'ratio' ? '×' : unit === '%' ? ' %' : ` ${unit}`}`;
}

/** The final table: one column per target, and ratios to the raw baseline and to direct. */
export function resultTable(results: TargetResult[], options: XdsBenchOptions): string {
  const baseline = results.find((r) => r.target === 'baseline');
  const direct = results.find((r) => r.target === 'direct');
  const relays = results.filter((r) => r.target !== 'direct' && r.target !== 'baseline' && r.target !== 'external');
  const ratioColumns = [
    ...(baseline ? relays.map((r) => ({ title: `${r.target} ÷ baseline`, of: r, to: baseline })) : []),
    ...(direct ? relays.map((r) => ({ title: `${r.target} ÷ direct`, of: r, to: direct })) : []),
  ];
  const rows = rowsFor(options.clients, options.link).map(([label, pick, unit]) => {
    const cells = results.map((r) => format(pick(r), unit));
    const ratios = ratioColumns.map(({ of, to }) => {
      const a = pick(of), b = pick(to);
      return a === undefined || b === undefined || b === 0 || unit === 'count' ? '' : format(a / b, 'ratio');
    });
    return [label, ...cells, ...ratios];
  }).filter((row) => row.slice(1).some((cell) => cell !== '–' && cell !== ''));
  const header = [`${options.clients} VMs, ${options.groups} groups, ${options.protocol}, profile ${options.profile}`, ...results.map((r) => r.target), ...ratioColumns.map((c) => c.title)];
  const verdicts = results.map((r) => (r.failure
    ? `${r.target}: failed: ${r.failure} ✘`
    : `${r.target}: correctness ${r.correctness.matching}/${r.correctness.checked} VMs match the reference${r.correctness.matching === r.correctness.checked ? ' ✔' : ' ✘'}`));
  return `${table(header, rows)}\n\n${verdicts.join('\n')}${errorKindLines(results)}`;
}

/** The errors the VMs saw, most frequent kinds first, per target. */
function errorKindLines(results: TargetResult[]): string {
  const lines = results.flatMap((r) => Object.entries(r.errorKinds).sort(([, a], [, b]) => b - a).slice(0, 6)
    .map(([kind, count]) => `  ${r.target}: ${count} × ${kind}`));
  return lines.length > 0 ? `\n\nErrors the VMs saw (retried):\n${lines.join('\n')}` : '';
}

export function passed(results: TargetResult[]): boolean {
  return results.every((r) => !r.failure && r.correctness.checked > 0 && r.correctness.matching === r.correctness.checked);
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];

/** An SVG empirical CDF, one line per target (log-scaled x when the range is wide). */
function cdfSvg(title: string, series: Array<{ name: string; samples: number[] }>): string {
  const width = 640, height = 320, left = 56, bottom = 40, top = 28, right = 16;
  const all = series.flatMap((s) => s.samples).filter((v) => v > 0);
  if (all.length === 0) return `<p>${title}: no samples</p>`;
  const min = Math.max(0.1, Math.min(...all)), max = Math.max(...all);
  const log = max / min > 20;
  const scaleX = (v: number) => {
    const t = log ? (Math.log10(Math.max(v, min)) - Math.log10(min)) / (Math.log10(max) - Math.log10(min) || 1) : (v - 0) / (max || 1);
    return left + t * (width - left - right);
  };
  const scaleY = (p: number) => height - bottom - p * (height - bottom - top);
  const lines = series.map((s, i) => {
    const sorted = [...s.samples].sort((a, b) => a - b);
    const step = Math.max(1, Math.floor(sorted.length / 400));
    const points: string[] = [];
    sorted.forEach((v, k) => {
      if (k % step === 0 || k === sorted.length - 1) points.push(`${scaleX(v).toFixed(1)},${scaleY((k + 1) / sorted.length).toFixed(1)}`);
    });
    return `<polyline fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="2" points="${points.join(' ')}"/>`
      + `<text x="${width - right - 150}" y="${top + 16 * (i + 1)}" fill="${COLORS[i % COLORS.length]}" font-size="12">${s.name} (n=${s.samples.length})</text>`;
  });
  const ticks = log
    ? Array.from({ length: 6 }, (_, k) => min * (max / min) ** (k / 5))
    : Array.from({ length: 6 }, (_, k) => (max * k) / 5);
  const xTicks = ticks.map((v) => `<text x="${scaleX(v).toFixed(1)}" y="${height - bottom + 16}" font-size="11" text-anchor="middle">${v >= 100 ? v.toFixed(0) : v.toFixed(1)}</text>`);
  const yTicks = [0, 0.5, 0.9, 0.99, 1].map((p) => `<text x="${left - 6}" y="${scaleY(p) + 4}" font-size="11" text-anchor="end">${p}</text><line x1="${left}" x2="${width - right}" y1="${scaleY(p)}" y2="${scaleY(p)}" stroke="#eee"/>`);
  return `<figure><figcaption>${title}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">`
    + `${yTicks.join('')}<line x1="${left}" y1="${height - bottom}" x2="${width - right}" y2="${height - bottom}" stroke="#333"/>`
    + `<line x1="${left}" y1="${top}" x2="${left}" y2="${height - bottom}" stroke="#333"/>${xTicks.join('')}${lines.join('')}`
    + `<text x="${(width + left) / 2}" y="${height - 6}" font-size="12" text-anchor="middle">ms${log ? ' (log scale)' : ''}</text></svg></figure>`;
}

const escapeHtml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** A self-contained HTML report: the table and latency CDFs, no network needed to view it. */
export function htmlReport(results: TargetResult[], options: XdsBenchOptions, command: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>meshrelay bench</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1100px}pre{background:#f6f6f6;padding:1em;overflow:auto}figure{display:inline-block;margin:1em}</style></head><body>
<h1>meshrelay bench</h1><p><code>${escapeHtml(command)}</code> — ${new Date().toISOString()}</p>
${cdfSvg('Time to full config (connect storm)', results.map((r) => ({ name: r.target, samples: r.samples.timeToConfigMs })))}
${cdfSvg('1-endpoint EDS update: upstream stamp → VM receipt', results.map((r) => ({ name: r.target, samples: r.samples.edsReceiveMs })))}
<pre>${escapeHtml(resultTable(results, options))}</pre></body></html>\n`;
}
