import { messageType } from '../xds/protocol/protos.js';
import { structToJson } from '../xds/protocol/struct.js';
import { TYPE_PREFIX } from '../xds/protocol/type-urls.js';
import { ISTIO_ALPN, UPSTREAM_TLS_TYPE, clusterSni, istioTlsMatch, parseClusterName, plaintextMatch } from './istio-tls.js';

type Decoded = Record<string, any>;

const clusterType = () => messageType('envoy.config.cluster.v3.Cluster');
const tlsType = () => messageType(UPSTREAM_TLS_TYPE);

/**
 * For `outbound|PORT|SUBSET|HOST` clusters, makes sure endpoints labelled tlsMode: istio get Istio
 * mTLS with SNI `outbound_.PORT_.SUBSET_.HOST` and Istio's ALPN — what the east-west gateway needs to
 * route them (docs/SPLIT-HORIZON.md). A cluster that already has them is returned as the same bytes.
 * `sniHost` maps the cluster's host to the one the SNI must name (legacy `.global` hosts).
 */
export function repairClusterSni(body: Buffer, sniHost: (host: string) => string = (host) => host): Buffer {
  const type = clusterType();
  const cluster = type.toObject(type.decode(body), { longs: Number, enums: Number, defaults: false }) as Decoded;
  const parsed = parseClusterName(String(cluster.name ?? ''));
  if (!parsed) return body;
  const sni = clusterSni(parsed.port, sniHost(parsed.host), parsed.subset);
  const matches: Decoded[] = cluster.transport_socket_matches ?? [];
  const istioIndex = matches.findIndex((entry) => structToJson(entry.match).tlsMode === 'istio');
  if (istioIndex === -1) {
    const hasFallback = matches.some((entry) => Object.keys(structToJson(entry.match)).length === 0) || cluster.transport_socket;
    cluster.transport_socket_matches = [istioTlsMatch(sni), ...matches, ...(hasFallback ? [] : [plaintextMatch()])];
    return Buffer.from(type.encode(type.fromObject(cluster)).finish());
  }
  const typedConfig = matches[istioIndex]!.transport_socket?.typed_config;
  if (typedConfig?.type_url !== `${TYPE_PREFIX}${UPSTREAM_TLS_TYPE}`) {
    matches[istioIndex] = istioTlsMatch(sni);
    return Buffer.from(type.encode(type.fromObject(cluster)).finish());
  }
  const tls = tlsType().toObject(tlsType().decode(typedConfig.value), { longs: Number, enums: Number, defaults: false }) as Decoded;
  const alpn: string[] = tls.common_tls_context?.alpn_protocols ?? [];
  if (tls.sni === sni && ISTIO_ALPN.every((protocol) => alpn.includes(protocol))) return body;
  tls.sni = sni;
  tls.common_tls_context = { ...tls.common_tls_context, alpn_protocols: [...new Set([...ISTIO_ALPN, ...alpn])] };
  typedConfig.value = Buffer.from(tlsType().encode(tlsType().fromObject(tls)).finish());
  return Buffer.from(type.encode(type.fromObject(cluster)).finish());
}
