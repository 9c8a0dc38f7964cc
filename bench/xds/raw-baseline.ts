/**
 * The raw fan-out baseline: the least a server on this stack can do to deliver the same config.
 * A bare `node:http2` server that, on a stream's first request, writes the whole config as four
 * pre-framed responses, ignores ACKs, and on an update serializes one response once and writes the
 * same frame to every stream. No sessions, no caches, no per-stream state beyond the stream itself:
 * the physical limit the relay is measured against. Runs as its own process (so its CPU and memory
 * can be read like the relay's), driven by its parent over IPC.
 */
import http2 from 'node:http2';
import { frameMessage } from '../../src/transport/grpc-framing.js';
import { LISTEN_BACKLOG } from '../../src/limits/accept-queue.js';
import { renderMesh } from '../../src/sim/config-generators.js';
import type { MeshModel } from '../../src/sim/mesh-model.js';
import { applyMeshPatch, type MeshPatch } from './mesh-patch.js';
import { AdsMethod, Envelopes, type XdsProtocol } from '../../src/xds/protocol/envelopes.js';
import type { ResourceUpdate } from '../../src/xds/cache/resource-cache.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';

export type BaselineCommand = { type: 'mesh'; patch: MeshPatch; network: string };
export type BaselineMessage = { type: 'listening'; port: number } | { type: 'pushed'; version: string; streams: number };

const ORDER = [TypeUrl.cluster, TypeUrl.endpoint, TypeUrl.listener, TypeUrl.route];
const FULL_STATE = new Set<string>([TypeUrl.cluster, TypeUrl.listener]);
const streams = new Map<http2.ServerHttp2Stream, XdsProtocol>();
let mesh: MeshModel | undefined;
let rendered = new Map<string, ResourceUpdate[]>();
let initialFrames = new Map<string, Buffer[]>();
let push = 0;
let nonce = 0;

function response(protocol: XdsProtocol, typeUrl: string, resources: ResourceUpdate[], version: string): Buffer {
  const any = (resource: ResourceUpdate) => ({ type_url: typeUrl, value: resource.body });
  const bytes = protocol === 'delta'
    ? Envelopes.encodeDeltaResponse({
      type_url: typeUrl, system_version_info: version, nonce: String(++nonce),
      resources: resources.map((resource) => ({ name: resource.name, version, resource: any(resource) })),
    })
    : Envelopes.encodeResponse({ type_url: typeUrl, version_info: version, nonce: String(++nonce), resources: resources.map(any) });
  return frameMessage(bytes);
}

const stamp = () => `${new Date().toISOString()}/${++push}`;

function setMesh(mesh: MeshModel, network: string): void {
  const next = renderMesh(mesh, { network, generator: 'envoy' });
  const version = stamp();
  if (rendered.size > 0) {
    // One frame per changed type, built once, written to every stream.
    for (const typeUrl of ORDER) {
      const before = new Map((rendered.get(typeUrl) ?? []).map((r) => [r.name, r.body]));
      const after = next.get(typeUrl) ?? [];
      const changed = after.filter((r) => !before.get(r.name)?.equals(r.body));
      if (changed.length === 0) continue;
      for (const protocol of ['delta', 'sotw'] as const) {
        const frame = response(protocol, typeUrl, FULL_STATE.has(typeUrl) && protocol === 'sotw' ? after : changed, version);
        for (const [stream, streamProtocol] of streams) if (streamProtocol === protocol) stream.write(frame);
      }
    }
  }
  rendered = next;
  initialFrames = new Map((['delta', 'sotw'] as const).map((protocol) => [protocol, ORDER.map((typeUrl) => response(protocol, typeUrl, rendered.get(typeUrl) ?? [], version))]));
  process.send?.({ type: 'pushed', version, streams: streams.size } satisfies BaselineMessage);
}

const server = http2.createServer({ settings: { maxConcurrentStreams: 1_000_000 } });
server.on('stream', (stream, headers) => {
  const protocol = headers[':path'] === AdsMethod.delta ? 'delta' : 'sotw';
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
  stream.on('error', () => {});
  let first = true;
  stream.on('data', () => {
    if (!first) return;
    first = false;
    streams.set(stream, protocol);
    for (const frame of initialFrames.get(protocol) ?? []) stream.write(frame);
  });
  stream.on('close', () => streams.delete(stream));
});
server.on('sessionError', () => {});
process.on('message', (command: BaselineCommand) => {
  if (command.type !== 'mesh') return;
  mesh = applyMeshPatch(mesh, command.patch);
  setMesh(mesh, command.network);
});
server.listen({ port: 0, host: '127.0.0.1', backlog: LISTEN_BACKLOG }, () => {
  process.send?.({ type: 'listening', port: (server.address() as { port: number }).port } satisfies BaselineMessage);
});
