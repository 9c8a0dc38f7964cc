import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

type KubeObject = { metadata: { name: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string> }; [key: string]: unknown };

/**
 * A stand-in for the API server's list and watch of two collections, enough for an informer (the
 * Kubernetes issue brings the real kube-apiserver). Tests change objects and can cut watches.
 */
export async function startFakeKubeApi() {
  let resourceVersion = 1;
  const collections = new Map<string, Map<string, KubeObject>>([
    ['/api/v1/namespaces/istio-system/configmaps', new Map()],
    ['/api/v1/services', new Map()],
  ]);
  const watchers = new Map<string, Set<http.ServerResponse>>([...collections.keys()].map((key) => [key, new Set()]));
  // Every event, so a watch resumed from a resourceVersion gets what it missed (as the real one does).
  const history: Array<{ collection: string; version: number; line: string }> = [];
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://api');
    const items = collections.get(url.pathname);
    if (!items || request.method !== 'GET') {
      response.writeHead(404, { 'content-type': 'application/json' }).end('{"kind":"Status","code":404}');
      return;
    }
    if (url.searchParams.get('watch') === 'true') {
      response.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      response.flushHeaders();
      const since = Number(url.searchParams.get('resourceVersion') ?? 0);
      for (const event of history) if (event.collection === url.pathname && event.version > since) response.write(event.line);
      watchers.get(url.pathname)!.add(response);
      response.on('close', () => watchers.get(url.pathname)!.delete(response));
      return;
    }
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
      apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: String(resourceVersion) }, items: [...items.values()],
    }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const kubeconfig = path.join(mkdtempSync(path.join(tmpdir(), 'fake-kube-')), 'config');
  writeFileSync(kubeconfig, `apiVersion: v1
kind: Config
clusters: [{ name: fake, cluster: { server: "http://127.0.0.1:${port}", insecure-skip-tls-verify: true } }]
users: [{ name: relay, user: { token: t } }]
contexts: [{ name: fake, context: { cluster: fake, user: relay } }]
current-context: fake
`);
  const key = (object: KubeObject) => `${object.metadata.namespace ?? ''}/${object.metadata.name}`;
  return {
    kubeconfig,
    put(collection: string, object: KubeObject) {
      const items = collections.get(collection)!;
      const type = items.has(key(object)) ? 'MODIFIED' : 'ADDED';
      const stored = { ...object, metadata: { ...object.metadata, resourceVersion: String(++resourceVersion) } };
      items.set(key(object), stored);
      const line = `${JSON.stringify({ type, object: stored })}\n`;
      history.push({ collection, version: resourceVersion, line });
      for (const watcher of watchers.get(collection)!) if (!watcher.destroyed) watcher.write(line);
    },
    /** Ends every open watch, as an API server restart or a load balancer timeout would. */
    cutWatches() {
      for (const set of watchers.values()) for (const watcher of set) watcher.destroy();
    },
    watching: (collection: string) => watchers.get(collection)!.size,
    close: () => new Promise<void>((resolve) => {
      for (const set of watchers.values()) for (const watcher of set) watcher.destroy();
      server.close(() => resolve());
    }),
  };
}
