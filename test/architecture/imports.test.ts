import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

function sources(directory: string): string[] {
  return readdirSync(path.join(root, directory), { withFileTypes: true }).flatMap((entry) => {
    const relative = path.join(directory, entry.name);
    if (entry.isDirectory()) return sources(relative);
    return entry.name.endsWith('.ts') ? [relative] : [];
  });
}

/** Each file's relative imports (type-only ones too: a circle of types is still one a reader must untangle). */
function importGraph(files: string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const text = readFileSync(path.join(root, file), 'utf8');
    const targets = [...text.matchAll(/from '(\.{1,2}\/[^']+)\.js'/g)].map((match) => path.join(path.dirname(file), `${match[1]}.ts`));
    graph.set(file, targets.filter((target) => graph.has(target) || files.includes(target)));
  }
  return graph;
}

function findCircle(graph: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const trail: string[] = [];
  const visit = (file: string): string[] | undefined => {
    if (state.get(file) === 'done') return undefined;
    if (state.get(file) === 'open') return [...trail.slice(trail.indexOf(file)), file];
    state.set(file, 'open');
    trail.push(file);
    for (const next of graph.get(file) ?? []) {
      const circle = visit(next);
      if (circle) return circle;
    }
    trail.pop();
    state.set(file, 'done');
    return undefined;
  };
  for (const file of graph.keys()) {
    const circle = visit(file);
    if (circle) return circle;
  }
  return undefined;
}

test('the service and the bench have no import circle', (t) => {
  const circle = findCircle(importGraph([...sources('src'), ...sources('bench')]));
  t.is(circle, undefined, circle?.join(' → '));
});

test('xds/ does not depend on the CA, Kubernetes or mesh subsystems', (t) => {
  const offending = sources('src/xds').flatMap((file) => [...readFileSync(path.join(root, file), 'utf8').matchAll(/from '([^']+)'/g)]
    .map((match) => match[1]!)
    .filter((target) => /\/(ca|k8s|mesh)\//.test(path.join(path.dirname(file), target)))
    .map((target) => `${file} → ${target}`));
  t.deepEqual(offending, []);
});

test('the worker coordinator does not reach up into the relay\'s set-up (the embedded simulator lives with sim/)', (t) => {
  const offending = sources('src/cluster').flatMap((file) => [...readFileSync(path.join(root, file), 'utf8').matchAll(/from '([^']+)'/g)]
    .map((match) => match[1]!)
    .filter((target) => /\/setup\//.test(path.join(path.dirname(file), target)))
    .map((target) => `${file} → ${target}`));
  t.deepEqual(offending, []);
});
