import { setTimeout as sleep } from 'node:timers/promises';
import type { MeshModel } from '../../src/sim/mesh-model.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { addService, bulkChange, changeOneEndpoint } from './mesh-changes.js';
import type { PhaseResult, Scenario, TargetKind, XdsBenchOptions } from './xds-bench-types.js';
import type { Topology } from './bench-servers.js';

/** What a scenario may do with the run: change the mesh, tell the fleet, and measure. */
export interface ScenarioRun {
  readonly options: XdsBenchOptions;
  readonly kind: TargetKind;
  readonly upstream: Topology['upstream'];
  readonly mesh: MeshModel;
  /** A new step number, so each change differs from the last. */
  nextStep(): number;
  /** Measures one phase: `action` starts it, `done` says every VM has what it should (timed from the action's start or end). */
  measure(name: Scenario, action: () => Promise<void>, done: () => boolean, timedFrom?: 'start' | 'end of action'): Promise<PhaseResult>;
  /** Applies a mesh change to every driven server. */
  push(next: MeshModel): Promise<void>;
  /** Applies a mesh change and has every VM watch for it on one type. */
  watchPush(typeUrl: string, next: MeshModel): Promise<void>;
  reconnectAll(): Promise<void>;
  allWatched(): boolean;
  readonly hasLink: boolean;
  cutLink(): Promise<void>;
  healLink(): Promise<void>;
}

type Step = (run: ScenarioRun) => Promise<PhaseResult | undefined>;

/** One endpoint changed churnRate times a second for `seconds`; returns the next change, not yet applied (the one to watch for). */
async function churn(run: ScenarioRun, seconds: number): Promise<MeshModel> {
  const intervalMs = 1000 / run.options.churnRate;
  const end = performance.now() + seconds * 1000;
  let next = changeOneEndpoint(run.mesh, run.nextStep());
  while (performance.now() < end) {
    await run.push(next);
    next = changeOneEndpoint(run.mesh, run.nextStep());
    await sleep(intervalMs);
  }
  return next;
}

const edsChange = (run: ScenarioRun) => run.watchPush(TypeUrl.endpoint, changeOneEndpoint(run.mesh, run.nextStep()));

/** What each scenario after the connect storm does; they run in BENCH_SCENARIOS order. */
export const SCENARIO_STEPS: Record<Exclude<Scenario, 'connect'>, Step> = {
  eds: (run) => run.measure('eds', () => edsChange(run), () => run.allWatched()),
  bulk: async (run) => {
    const bulk = bulkChange(run.mesh, run.options.bulkKib);
    const phase = await run.measure('bulk', () => run.watchPush(TypeUrl.endpoint, bulk.mesh), () => run.allWatched());
    return { ...phase, updateBytes: bulk.bytes };
  },
  cds: (run) => run.measure('cds', () => run.watchPush(TypeUrl.cluster, addService(run.mesh, run.nextStep())), () => run.allWatched()),
  churn: (run) => run.measure('churn', async () => {
    await run.watchPush(TypeUrl.endpoint, await churn(run, run.options.churnSeconds));
  }, () => run.allWatched()),
  'upstream-restart': async (run) => {
    // The baseline has no upstream behind it: a restart of the simulated istiod does not concern it.
    const restart = run.kind === 'baseline' ? undefined : run.upstream?.restart;
    if (!restart) return undefined;
    return run.measure('upstream-restart', async () => {
      await restart(1000);
      await edsChange(run);
    }, () => run.allWatched());
  },
  reconnect: (run) => run.measure('reconnect', async () => {
    await run.reconnectAll();
    await edsChange(run);
  }, () => run.allWatched()),
  // The edge link cut for cutSeconds while the upstream churns: VMs must keep their streams and
  // config; timed from the heal until every VM has the last change.
  'link-cut': async (run) => {
    if (!run.hasLink) return undefined;
    return run.measure('link-cut', async () => {
      await run.cutLink();
      const next = await churn(run, run.options.cutSeconds);
      await run.healLink();
      await run.watchPush(TypeUrl.endpoint, next);
    }, () => run.allWatched(), 'end of action');
  },
};
