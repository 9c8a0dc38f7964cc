import { renderMesh } from '../src/sim/config-generators.js';
import { frameMessage, gzipFrame } from '../src/transport/grpc-framing.js';
import { Envelopes } from '../src/xds/protocol/envelopes.js';
import { shortTypeName } from '../src/xds/protocol/type-urls.js';
import { profileMesh, type ProfileName } from './xds/profiles.js';
import { table } from './stats.js';

export interface CompressionFigure {
  type: string;
  rawBytes: number;
  gzipBytes: number;
  /** CPU time to compress the response once (median of the rounds), in milliseconds. */
  gzipMs: number;
}

/**
 * What gzip saves and costs on the relay↔relay link: each type's full response for a VM of the
 * profile's mesh (as the simulated istiod renders it for vm-net), compressed the way the relay
 * does it — once per response, however many streams receive it.
 */
export function runCompressionBench(profiles: ProfileName[], rounds: number): { figures: Array<CompressionFigure & { profile: ProfileName }>; report: string } {
  const figures: Array<CompressionFigure & { profile: ProfileName }> = [];
  for (const profile of profiles) {
    const rendered = renderMesh(profileMesh(profile), { network: 'vm-net', generator: 'envoy' });
    for (const [typeUrl, resources] of rendered) {
      const frame = frameMessage(Envelopes.encodeDeltaResponse({
        system_version_info: 'v1', type_url: typeUrl, nonce: '1',
        resources: resources.map((resource) => ({ name: resource.name, version: 'v1', resource: { type_url: typeUrl, value: resource.body } })),
        removed_resources: [],
      }));
      const times: number[] = [];
      let gzipped = frame;
      for (let round = 0; round < rounds; round++) {
        const started = process.cpuUsage();
        gzipped = gzipFrame(frame);
        const used = process.cpuUsage(started);
        times.push((used.user + used.system) / 1000);
      }
      times.sort((a, b) => a - b);
      figures.push({ profile, type: shortTypeName(typeUrl), rawBytes: frame.length, gzipBytes: gzipped.length, gzipMs: times[Math.floor(times.length / 2)]! });
    }
  }
  const rows = figures.map((f) => [
    `${f.profile} ${f.type}`, `${(f.rawBytes / 1024).toFixed(1)} KiB`, `${(f.gzipBytes / 1024).toFixed(1)} KiB`,
    `${((f.gzipBytes / f.rawBytes) * 100).toFixed(0)} %`, `${f.gzipMs.toFixed(2)} ms`, `${((f.gzipMs * 1024 * 1024) / f.rawBytes).toFixed(1)} ms/MiB`,
  ]);
  return { figures, report: table(['response (profile, type)', 'raw', 'gzip', 'gzip ÷ raw', 'CPU to compress once', 'CPU per MiB'], rows) };
}
