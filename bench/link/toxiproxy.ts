import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../free-port.js';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Toxiproxy (github.com/Shopify/toxiproxy) driven through its HTTP API: a TCP proxy whose link can
 * be given latency, a bandwidth cap, a cut (`timeout`: data stops, sockets stay open), resets and
 * small segments. The bench's edge scenario and the edge tests put one between an edge relay and
 * its upstream.
 */

export type ToxicDirection = 'upstream' | 'downstream';

/** The toxics this project uses, with toxiproxy's attribute names (README "Toxics"). */
export type Toxic =
  | { type: 'latency'; attributes: { latency: number; jitter?: number } }
  | { type: 'bandwidth'; attributes: { rate: number } }
  | { type: 'timeout'; attributes: { timeout: number } }
  | { type: 'reset_peer'; attributes: { timeout: number } }
  | { type: 'slicer'; attributes: { average_size: number; size_variation?: number; delay?: number } };

export class ToxiproxyError extends Error {}

/** The toxiproxy-server scripts/build-test-peers.sh builds (this file is dist/bench/link/ once built), else the one on PATH. */
export function defaultToxiproxyBinary(): string {
  const built = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../.cache/peers/toxiproxy-server');
  return existsSync(built) ? built : 'toxiproxy-server';
}

export class Toxiproxy {
  private constructor(private readonly apiUrl: string, private readonly child: ChildProcess | undefined) {}

  /** Starts `toxiproxy-server` on a free loopback port and waits for its API. */
  static async start(binary: string): Promise<Toxiproxy> {
    const port = await freePort();
    const child = spawn(binary, ['-host', '127.0.0.1', '-port', String(port), '-proxy-metrics'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-2000); });
    const proxy = new Toxiproxy(`http://127.0.0.1:${port}`, child);
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) throw new ToxiproxyError(`toxiproxy-server exited (${child.exitCode}): ${stderr}`);
      if (await proxy.version().then(() => true, () => false)) return proxy;
      if (Date.now() > deadline) {
        child.kill();
        throw new ToxiproxyError(`toxiproxy-server did not answer on port ${port}: ${stderr}`);
      }
      await sleep(50);
    }
  }

  async version(): Promise<string> {
    return (await this.request('GET', '/version')) as string;
  }

  /** A proxy listening on a free loopback port, forwarding to `upstream` (host:port); returns its listen address. */
  async createProxy(name: string, upstream: string): Promise<string> {
    const created = await this.request('POST', '/proxies', { name, listen: '127.0.0.1:0', upstream, enabled: true }) as { listen: string };
    return created.listen;
  }

  async addToxic(proxy: string, name: string, toxic: Toxic, stream: ToxicDirection = 'downstream'): Promise<void> {
    await this.request('POST', `/proxies/${proxy}/toxics`, { name, stream, toxicity: 1, ...toxic });
  }

  async removeToxic(proxy: string, name: string): Promise<void> {
    await this.request('DELETE', `/proxies/${proxy}/toxics/${name}`);
  }

  /** Both directions of a link: latency (each way), bandwidth (each way). */
  async shapeLink(proxy: string, link: LinkShape): Promise<void> {
    for (const stream of ['upstream', 'downstream'] as const) {
      if (link.latencyMs > 0) await this.addToxic(proxy, `latency-${stream}`, { type: 'latency', attributes: { latency: link.latencyMs, jitter: link.jitterMs } }, stream);
      if (link.bandwidthKBps > 0) await this.addToxic(proxy, `bandwidth-${stream}`, { type: 'bandwidth', attributes: { rate: link.bandwidthKBps } }, stream);
    }
  }

  /** Cuts the link: data stops both ways, sockets stay open (toxiproxy `timeout` with 0: never closed). */
  async cut(proxy: string): Promise<void> {
    for (const stream of ['upstream', 'downstream'] as const) await this.addToxic(proxy, `cut-${stream}`, { type: 'timeout', attributes: { timeout: 0 } }, stream);
  }

  async heal(proxy: string): Promise<void> {
    for (const stream of ['upstream', 'downstream'] as const) await this.removeToxic(proxy, `cut-${stream}`);
  }

  /**
   * TCP bytes that crossed a proxy toward its clients and toward its upstream, from toxiproxy's
   * metrics, which count a connection's bytes when it closes.
   */
  async closedConnectionBytes(proxy: string): Promise<{ toClient: number; toUpstream: number }> {
    const text = await (await fetch(`${this.apiUrl}/metrics`)).text();
    const bytes = { toClient: 0, toUpstream: 0 };
    for (const match of text.matchAll(/^toxiproxy_proxy_sent_bytes_total\{([^}]*)\} (\S+)$/gm)) {
      const labels = match[1]!;
      if (!labels.includes(`proxy="${proxy}"`)) continue;
      if (labels.includes('direction="downstream"')) bytes.toClient += Number(match[2]);
      else if (labels.includes('direction="upstream"')) bytes.toUpstream += Number(match[2]);
    }
    return bytes;
  }

  async close(): Promise<void> {
    if (!this.child || this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child!.once('exit', resolve));
    this.child.kill();
    await exited;
  }

  private async request(method: string, path: string, body?: unknown): Promise<unknown> {
    const response = await fetch(`${this.apiUrl}${path}`, {
      method, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    const text = await response.text();
    if (!response.ok) throw new ToxiproxyError(`toxiproxy ${method} ${path}: ${response.status} ${text}`);
    if (!text) return undefined;
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
}

export interface LinkShape {
  latencyMs: number;
  jitterMs: number;
  /** KB/s each way (toxiproxy's unit); 0: not capped. */
  bandwidthKBps: number;
}

/** `latency=100ms,jitter=10ms,bandwidth=1mbit` → a link shape. */
export function parseLinkShape(text: string): LinkShape {
  const shape: LinkShape = { latencyMs: 0, jitterMs: 0, bandwidthKBps: 0 };
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [key, value = ''] = part.split('=');
    if (key === 'latency' || key === 'jitter') {
      const match = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(value);
      if (!match) throw new ToxiproxyError(`link ${key} "${value}": give milliseconds or seconds, e.g. 100ms`);
      const ms = Number(match[1]) * (match[2] === 's' ? 1000 : 1);
      if (key === 'latency') shape.latencyMs = ms;
      else shape.jitterMs = ms;
    } else if (key === 'bandwidth') {
      const match = /^(\d+(?:\.\d+)?)(kbit|mbit|gbit)$/.exec(value);
      if (!match) throw new ToxiproxyError(`link bandwidth "${value}": give kbit, mbit or gbit per second, e.g. 1mbit`);
      const bitsPerSecond = Number(match[1]) * { kbit: 1e3, mbit: 1e6, gbit: 1e9 }[match[2] as 'kbit'];
      shape.bandwidthKBps = Math.max(1, Math.round(bitsPerSecond / 8 / 1000));
    } else {
      throw new ToxiproxyError(`unknown link setting "${key}": latency, jitter or bandwidth`);
    }
  }
  return shape;
}
