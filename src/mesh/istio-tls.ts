import { messageType } from '../xds/protocol/protos.js';
import { jsonToStruct } from '../xds/protocol/struct.js';
import { TYPE_PREFIX } from '../xds/protocol/type-urls.js';

/** Istio's names and shapes for mesh mTLS on outbound clusters (docs/SPLIT-HORIZON.md). */

export const ISTIO_ALPN = ['istio-peer-exchange', 'istio'];
export const UPSTREAM_TLS_TYPE = 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const RAW_BUFFER_TYPE = 'envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer';

export function clusterName(port: number, host: string, subset = ''): string {
  return `outbound|${port}|${subset}|${host}`;
}

/** Istio's SNI for a mesh cluster: outbound_.PORT_.SUBSET_.HOST. */
export function clusterSni(port: number, host: string, subset = ''): string {
  return `outbound_.${port}_.${subset}_.${host}`;
}

/** `outbound|PORT|SUBSET|HOST` → its parts, or undefined for any other cluster name. */
export function parseClusterName(name: string): { port: number; subset: string; host: string } | undefined {
  const match = /^outbound\|(\d+)\|([^|]*)\|(.+)$/.exec(name);
  return match ? { port: Number(match[1]), subset: match[2]!, host: match[3]! } : undefined;
}

export function packAny(typeName: string, object: Record<string, unknown>): { type_url: string; value: Buffer } {
  const type = messageType(typeName);
  return { type_url: `${TYPE_PREFIX}${typeName}`, value: Buffer.from(type.encode(type.fromObject(object)).finish()) };
}

const sdsConfig = (secret: string) => ({
  name: secret,
  sds_config: {
    api_config_source: { api_type: 'GRPC', transport_api_version: 'V3', grpc_services: [{ envoy_grpc: { cluster_name: 'sds-grpc' } }] },
    resource_api_version: 'V3',
  },
});

/** istio-agent's SDS secrets: the workload certificate ("default") and the mesh root ("ROOTCA"). */
export function istioUpstreamTls(sni: string, subjectAltNames: string[] = []): Record<string, unknown> {
  return {
    common_tls_context: {
      alpn_protocols: ISTIO_ALPN,
      tls_certificate_sds_secret_configs: [sdsConfig('default')],
      combined_validation_context: {
        default_validation_context: { match_subject_alt_names: subjectAltNames.map((exact) => ({ exact })) },
        validation_context_sds_secret_config: sdsConfig('ROOTCA'),
      },
    },
    sni,
  };
}

/** The tlsMode-istio transport socket match (mTLS with SNI for endpoints labelled tlsMode: istio). */
export function istioTlsMatch(sni: string, subjectAltNames: string[] = []): Record<string, unknown> {
  return {
    name: 'tlsMode-istio',
    match: jsonToStruct({ tlsMode: 'istio' }),
    transport_socket: { name: 'envoy.transport_sockets.tls', typed_config: packAny(UPSTREAM_TLS_TYPE, istioUpstreamTls(sni, subjectAltNames)) },
  };
}

/** The fallback match: plaintext for endpoints without a sidecar. */
export function plaintextMatch(): Record<string, unknown> {
  return {
    name: 'tlsMode-disabled',
    match: jsonToStruct({}),
    transport_socket: { name: 'envoy.transport_sockets.raw_buffer', typed_config: packAny(RAW_BUFFER_TYPE, {}) },
  };
}
