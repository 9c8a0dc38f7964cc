import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parser } from '@prometheus-io/lezer-promql';
import test from 'ava';
import { startRelay } from '../helpers/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const dashboardFile = path.join(root, 'deploy/grafana/meshrelay-dashboard.json');

interface Panel { type: string; title: string; targets?: Array<{ expr: string }>; panels?: Panel[] }

function panels(list: Panel[]): Panel[] {
  return list.flatMap((panel) => [panel, ...panels(panel.panels ?? [])]);
}

/** The metric names a PromQL expression selects, read from its syntax tree (a parse error fails). */
function selectedMetrics(expr: string): string[] {
  const names: string[] = [];
  const cursor = parser.parse(expr).cursor();
  do {
    if (cursor.type.isError) throw new Error(`PromQL does not parse at ${cursor.from}: ${expr}`);
    if (cursor.name === 'Identifier' && cursor.node.parent?.name === 'VectorSelector') names.push(expr.slice(cursor.from, cursor.to));
  } while (cursor.next());
  return names;
}

/** A histogram's series are exported under its name; _bucket, _sum and _count are its parts. */
const familyOf = (series: string) => series.replace(/_(bucket|sum|count)$/, '');

test('every panel of the Grafana dashboard parses as PromQL and names only metrics a running relay exports', async (t) => {
  const dashboard = JSON.parse(readFileSync(dashboardFile, 'utf8')) as { panels: Panel[]; templating: { list: Array<{ definition?: string }> } };
  const queries = panels(dashboard.panels).flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr })));
  t.true(queries.length >= 20, `${queries.length} queries`);
  // A relay with every subsystem that exports metrics: the local CA, snapshots, auto-registration.
  const state = mkdtempSync(path.join(tmpdir(), 'meshrelay-dashboard-'));
  const kubeconfig = path.join(state, 'kubeconfig');
  writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\nclusters: [{ name: c, cluster: { server: "http://127.0.0.1:9" } }]\nusers: [{ name: u, user: {} }]\ncontexts: [{ name: x, context: { cluster: c, user: u } }]\ncurrent-context: x\n');
  const relay = await startRelay({ caMode: 'local', stateDir: state, cacheSnapshotDir: path.join(state, 'snapshots'), autoRegistration: true, kubeconfig });
  t.teardown(() => relay.stop());
  const exposition = await (await fetch(`${relay.adminUrl}/metrics`)).text();
  const exported = new Set([...exposition.matchAll(/^# TYPE (\S+) /gm)].map((match) => match[1]!));
  const named = new Set(queries.flatMap(({ expr }) => selectedMetrics(expr)));
  t.true(named.size >= 30, `the dashboard names ${named.size} metrics`);
  const missing = queries.flatMap(({ panel, expr }) => selectedMetrics(expr).filter((name) => !exported.has(familyOf(name)) && !exported.has(name)).map((name) => `${panel}: ${name}`));
  t.deepEqual(missing, [], 'metrics the dashboard asks for that the relay does not export');
  for (const variable of dashboard.templating.list) if (variable.definition) t.true(exported.has(/label_values\((\w+)/.exec(variable.definition)![1]!));
});
