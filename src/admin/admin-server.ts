import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.js';
import type { ListenAddress } from '../transport/listen-address.js';

/** A page: JSON by default, or text with its own content type (Prometheus metrics). */
export type AdminRoute = (url: URL) => { status: number; body: unknown; contentType?: string } | Promise<{ status: number; body: unknown; contentType?: string }>;

/**
 * The admin port (15014): health, readiness and debug views as JSON. Routes are registered by the
 * subsystems that own the data, so this file knows nothing about xDS.
 */
export class AdminServer {
  private readonly routes = new Map<string, AdminRoute>();
  private readonly putRoutes = new Map<string, AdminRoute>();
  private server: http.Server | undefined;

  constructor(private readonly log: Logger) {}

  route(path: string, handler: AdminRoute): void {
    this.routes.set(path, handler);
  }

  /** A page that changes something (PUT), kept apart so a GET can never change state. */
  putRoute(path: string, handler: AdminRoute): void {
    this.putRoutes.set(path, handler);
  }

  async listen(address: ListenAddress): Promise<ListenAddress> {
    const server = http.createServer((request, response) => this.handle(request, response));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // exclusive: a worker's own (internal) port, not one shared through the cluster primary.
      server.listen({ port: address.port, host: address.host, exclusive: true }, () => { server.off('error', reject); resolve(); });
    });
    this.server = server;
    const bound = server.address() as AddressInfo;
    return { host: bound.address, port: bound.port };
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    const url = new URL(request.url ?? '/', 'http://admin');
    const handler = request.method === 'PUT' ? this.putRoutes.get(url.pathname) : request.method === 'GET' ? this.routes.get(url.pathname) : undefined;
    if (!handler) {
      response.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `no such page ${url.pathname}`, pages: [...this.routes.keys()] }));
      return;
    }
    Promise.resolve().then(() => handler(url)).then(({ status, body, contentType }) => {
      if (contentType) response.writeHead(status, { 'content-type': contentType }).end(String(body));
      else response.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body, null, 2)}\n`);
    }, (error: unknown) => {
      this.log.error({ err: error, path: url.pathname }, 'admin page failed');
      response.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: (error as Error).message }));
    });
  }
}
