import http from 'node:http';
import https from 'node:https';
import {
  KubeConfig, ResponseContext, SelfDecodingBody, ServerConfiguration, createConfiguration, wrapHttpLibrary,
  type ApiType, type PromiseHttpLibrary, type RequestContext,
} from '@kubernetes/client-node';
import { RelayError } from '../errors.js';

/**
 * Connections each kubeconfig keeps to its API server for reads, and as many for writes; calls
 * beyond wait in their agent's queue. Reads have their own: a VM returning to this replica is
 * served once its entry has been read, and must not wait behind a failover's queue of writes.
 */
export const API_SERVER_SOCKETS = 32;

/**
 * Sends the API clients' requests over kept connections. @kubernetes/client-node builds a new
 * https.Agent for every request (kubernetes-client/javascript#2893), so each call pays a TCP and
 * TLS handshake on both sides, and a burst (thousands of VMs moving to this replica, each with a
 * WorkloadEntry read and write) opens thousands of connections to the API server at once. client-go,
 * istiod's client, keeps its connections. The library's node-fetch cannot be given a kept,
 * bounded agent instead: it fails good chunked responses on reused sockets as "Premature close"
 * (node-fetch/node-fetch#1767), so the requests go out through node:http here.
 */
class KeptConnections implements PromiseHttpLibrary {
  private readonly agents = new Map<string, http.Agent>();

  send(request: RequestContext): Promise<ResponseContext> {
    const url = new URL(request.getUrl());
    const body = request.getBody();
    if (body !== undefined && typeof body !== 'string') return Promise.reject(new Error('only JSON request bodies are sent to the API server'));
    const headers: Record<string, string> = { ...request.getHeaders() };
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    const transport = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const method = request.getHttpMethod();
      const outgoing = transport.request(url, { method, headers, agent: this.agentLike(request.getAgent(), method === 'GET'), signal: request.getSignal() }, (response) => {
        const chunks: Buffer[] = [];
        const received = new Promise<Buffer>((done, fail) => {
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => done(Buffer.concat(chunks)));
          response.on('error', fail);
          response.on('aborted', () => fail(new Error(`the API server's response to ${method} ${url.pathname} was cut`)));
        });
        received.catch(() => undefined);
        const responseHeaders: Record<string, string> = {};
        for (const [name, value] of Object.entries(response.headers)) if (value !== undefined) responseHeaders[name] = Array.isArray(value) ? value.join(', ') : value;
        resolve(new ResponseContext(response.statusCode ?? 0, responseHeaders, new SelfDecodingBody(received)));
      });
      outgoing.on('error', reject);
      outgoing.end(body);
    });
  }

  /** Kept agents per TLS setup the library asked for, one for reads and one for writes; proxy agents are used as it built them. */
  private agentLike(built: http.Agent | https.Agent | undefined, read: boolean): http.Agent | undefined {
    if (!built || (built.constructor !== https.Agent && built.constructor !== http.Agent)) return built;
    const options = (built as https.Agent).options;
    const secure = built instanceof https.Agent;
    const key = JSON.stringify([read, secure, options.ca, options.cert, options.key, options.pfx, options.rejectUnauthorized, options.servername].map((value) => value?.toString()));
    let agent = this.agents.get(key);
    if (!agent) {
      const kept = { ...options, keepAlive: true, maxSockets: API_SERVER_SOCKETS };
      agent = secure ? new https.Agent(kept) : new http.Agent(kept);
      this.agents.set(key, agent);
    }
    return agent;
  }
}

class KeptConnectionKubeConfig extends KubeConfig {
  private readonly connections = wrapHttpLibrary(new KeptConnections());

  override makeApiClient<T extends ApiType>(apiClientType: new (config: ReturnType<typeof createConfiguration>) => T): T {
    const cluster = this.getCurrentCluster();
    if (!cluster) throw new RelayError('MR_BAD_CONFIG', 'the kubeconfig names no current cluster');
    return new apiClientType(createConfiguration({
      baseServer: new ServerConfiguration(cluster.server, {}),
      authMethods: { default: this },
      httpApi: this.connections,
    }));
  }
}

/** A kubeconfig from a file, or the pod's in-cluster service account when no file is given. */
export function loadKubeConfig(kubeconfigFile: string): KubeConfig {
  const config = new KeptConnectionKubeConfig();
  try {
    if (kubeconfigFile) config.loadFromFile(kubeconfigFile);
    else config.loadFromCluster();
  } catch (error) {
    throw new RelayError('MR_BAD_CONFIG', `cannot load kubeconfig ${kubeconfigFile || '(in-cluster)'}: ${(error as Error).message}`);
  }
  if (!config.getCurrentCluster()) {
    throw new RelayError('MR_BAD_CONFIG', `kubeconfig ${kubeconfigFile || '(in-cluster)'} names no cluster`);
  }
  return config;
}
