import type { BENCH_SCENARIOS } from '../../src/config/schema.js';
import type { XdsProtocol } from '../../src/xds/protocol/envelopes.js';
import type { LatencySummary } from '../stats.js';
import type { ProfileName } from './profiles.js';
import type { LinkShape } from '../link/toxiproxy.js';

/** What `meshrelay bench` is asked to run, and what each target's run measured. */

/** `group-workers` / `stream-workers`: the same relay as `group` / `stream`, with `relayWorkers` worker processes. */
export type TargetKind = 'direct' | 'group' | 'stream' | 'group-workers' | 'stream-workers' | 'baseline' | 'external';
export type Scenario = (typeof BENCH_SCENARIOS)[number];

export interface XdsBenchOptions {
  clients: number;
  groups: number;
  protocol: XdsProtocol;
  /** Load-generator processes, and clients per source address (fleet-layout.ts). */
  workers: number;
  clientsPerAddress: number;
  profile: ProfileName;
  nackFraction: number;
  targets: TargetKind[];
  /** For `external`: the address to test, and optionally its pid (CPU, memory) and admin URL (upstream counters). */
  external?: { target: string; pid?: number; adminUrl?: string };
  /**
   * An upstream the bench does not start (a real istiod): `direct` connects the VMs to it, `group`
   * and `stream` put a relay in front of it. Its config cannot be changed from here, so only the
   * connect storm runs; `pid` (on this host) gives its CPU and memory; `kubeconfig`, the API server
   * istiod reads, lets the relay key VMs by the config bound to their addresses.
   */
  upstream?: { target: string; pid?: number; kubeconfig?: string };
  connectRate: number;
  scenarios: Scenario[];
  /** Every K-th VM is address-bound upstream (0: none): correctness compares each class with its own reference. */
  boundEvery: number;
  /** The relay's verifyGroupFraction (group mode): the share of joining VMs it checks against istiod. */
  verifyGroupFraction: number;
  /** Size of the `bulk` scenario's EDS update, in KiB (as rendered for the VMs' network). */
  bulkKib: number;
  churnRate: number;
  churnSeconds: number;
  /** A thin link between the VMs' side and the upstream (docs/EDGE.md), through the toxiproxy-server given. */
  link?: { shape: LinkShape; toxiproxy: string };
  /** link-cut: how long the link is cut. */
  cutSeconds: number;
  timeoutSeconds: number;
  relayCpuProfileDir: string;
  /** Worker processes of the `*-workers` targets (the others run one process). */
  relayWorkers: number;
  /** How those workers are given connections (serve's --worker-balance). */
  relayWorkerBalance?: 'source-address' | 'least-connections' | 'kernel' | undefined;
  /** CPU lists (taskset -c) for the targets' processes and for the load generator's; empty: unpinned. */
  relayCpus: string;
  clientCpus: string;
  onProgress?: (line: string) => void;
}

export interface PhaseResult {
  /** A relay target: bytes its upstream streams received during the phase (from istiod). */
  upstreamBytes?: number;
  /** Wall time until every client had the change (or full config, for connect). */
  totalMs: number | undefined;
  complete: number;
  receive?: LatencySummary;
  ack?: LatencySummary;
  timeToConfig?: LatencySummary;
  serverCpuSeconds: number | undefined;
  serverPeakRssBytes: number | undefined;
  /** The same for the upstream (simulated or real istiod), when its pid is known. */
  upstreamCpuSeconds: number | undefined;
  upstreamPeakRssBytes: number | undefined;
  bytesReceived: number;
  errors: number;
  reconnects: number;
  /** The size of the update the phase pushed (bulk), in bytes of resources. */
  updateBytes?: number;
  /** Bytes that crossed the thin link during the phase (both ways), with --link. */
  linkBytes?: number;
}

export interface TargetResult {
  target: TargetKind;
  phases: Partial<Record<Scenario, PhaseResult>>;
  /** Samples for the report's CDF plots. */
  samples: { timeToConfigMs: number[]; edsReceiveMs: number[] };
  /** `workers`: a relay target's worker processes (each keeps its own upstream streams). */
  server: { idleRssBytes?: number; startRssBytes?: number; idleRssPerVmKiB?: number; upstreamIdleRssBytes?: number; workers?: number };
  /** The longest a load-generator process's event loop was late during the run (ms): past the keepalive timeout, its VMs answer no PING in time. */
  loadGeneratorLoopDelayMaxMs?: number;
  /** Upstream streams of groups with VMs (streaming or not), groups lingering without any, and all they received. */
  upstream?: { streams: number; notStreaming: number; lingering: number; bytesReceived: number };
  downstreamBytes: number;
  nacksSent: number;
  correctness: { checked: number; matching: number; expectedHashes: number };
  errorMessages: string[];
  /** Errors the VMs saw over the run, by kind (the message with its numbers taken out). */
  errorKinds: Record<string, number>;
  /** Why the run stopped before its end (a process it needed died, an admin port stopped answering). */
  failure?: string;
}
