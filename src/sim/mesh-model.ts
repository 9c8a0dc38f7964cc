import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { parseYamlDocument } from '../config/yaml-document.js';
import { RelayError } from '../errors.js';

const endpointSchema = z.object({
  address: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  network: z.string().default(''),
  cluster: z.string().optional(),
  locality: z.string().default(''),
  weight: z.number().int().min(1).default(1),
  /** `istio` when the workload has a sidecar (mTLS); `disabled` otherwise. */
  tlsMode: z.enum(['istio', 'disabled']).default('istio'),
  workloadName: z.string().optional(),
  serviceAccount: z.string().default('default'),
  labels: z.record(z.string(), z.string()).default({}),
});

const serviceSchema = z.object({
  name: z.string().min(1),
  namespace: z.string().min(1),
  /** The service's cluster IP; TCP ports get a listener on it, as istiod builds `<VIP>_<port>`. */
  vip: z.string().default('0.0.0.0'),
  /** Istio's port naming: names starting with `tcp` are TCP (tcp_proxy), others HTTP. */
  ports: z.array(z.object({ port: z.number().int().min(1).max(65535), name: z.string().default('http') })).min(1),
  endpoints: z.array(endpointSchema).default([]),
});

const gatewaySchema = z.object({
  address: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(15443),
  /**
   * The cluster of a gateway istiod found as a registry Service (meshNetworks registryServiceName).
   * A gateway given by address in meshNetworks has none (pilot/pkg/model/network.go).
   */
  cluster: z.string().default(''),
});

export const meshSchema = z.object({
  domain: z.string().default('cluster.local'),
  networks: z.record(z.string(), z.object({
    /** The Kubernetes cluster id whose registry holds this network's endpoints (meshNetworks fromRegistry). */
    clusterId: z.string().default('Kubernetes'),
    gateways: z.array(gatewaySchema).default([]),
  })).default({}),
  services: z.array(serviceSchema).default([]),
  churn: z.object({
    /** Endpoint changes per second (0 = none). */
    ratePerSecond: z.number().min(0).default(0),
  }).default({ ratePerSecond: 0 }),
});

export type MeshModel = z.infer<typeof meshSchema>;
export type MeshService = z.infer<typeof serviceSchema>;
export type MeshEndpoint = z.infer<typeof endpointSchema>;

/** The built-in mesh: a cluster network with an east-west gateway, and a VM network. */
export const defaultMeshYaml = `
domain: cluster.local
networks:
  net1:
    clusterId: cluster1
    gateways:
      - address: 192.0.2.10
        port: 15443
  vm-net:
    clusterId: cluster1
services:
  - name: httpbin
    namespace: bar
    vip: 10.96.0.10
    ports: [{ port: 8000, name: http }]
    endpoints:
      - { address: 10.10.1.11, port: 80, network: net1, locality: us-east1/us-east1-b, serviceAccount: httpbin, labels: { app: httpbin, version: v1 } }
      - { address: 10.10.1.12, port: 80, network: net1, locality: us-east1/us-east1-c, serviceAccount: httpbin, labels: { app: httpbin, version: v1 } }
  - name: reviews
    namespace: bookinfo
    vip: 10.96.0.21
    ports: [{ port: 9080, name: http }]
    endpoints:
      - { address: 10.10.2.21, port: 9080, network: net1, locality: us-east1/us-east1-b, labels: { app: reviews, version: v1 } }
      - { address: 10.10.2.22, port: 9080, network: net1, locality: us-east1/us-east1-b, labels: { app: reviews, version: v2 } }
      - { address: 10.10.2.23, port: 9080, network: net1, locality: us-east1/us-east1-c, labels: { app: reviews, version: v3 } }
  - name: ratings
    namespace: bookinfo
    vip: 10.96.0.22
    ports: [{ port: 9080, name: http }]
    endpoints:
      - { address: 10.10.2.31, port: 9080, network: net1, locality: us-east1/us-east1-b, labels: { app: ratings, version: v1 } }
  - name: legacy-db
    namespace: bar
    vip: 10.96.0.50
    ports: [{ port: 5432, name: tcp }]
    endpoints:
      - { address: 10.10.3.41, port: 5432, network: net1, tlsMode: disabled, labels: { app: legacy-db } }
  - name: vm-app
    namespace: vm
    vip: 10.96.0.60
    ports: [{ port: 8080, name: http }]
    endpoints:
      - { address: 172.16.0.5, port: 8080, network: vm-net, locality: edge/site-a, labels: { app: vm-app, version: v1 } }
      - { address: 172.16.0.6, port: 8080, network: vm-net, locality: edge/site-a, labels: { app: vm-app, version: v1 } }
`;

export function parseMesh(yamlText: string, source: string): MeshModel {
  return parseYamlDocument(meshSchema, yamlText, source);
}

export function loadMesh(file: string | undefined): MeshModel {
  if (!file) return parseMesh(defaultMeshYaml, 'built-in mesh');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new RelayError('MR_BAD_CONFIG', `cannot read mesh file ${file}: ${(error as Error).message}`);
  }
  return parseMesh(text, file);
}

export function serviceHost(service: MeshService, domain: string): string {
  return `${service.name}.${service.namespace}.svc.${domain}`;
}
