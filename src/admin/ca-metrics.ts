import { Gauge, Histogram, type Registry } from 'prom-client';
import { scrapedCounter } from './scraped-counter.js';
import type { CaSubsystem } from '../ca/ca-setup.js';

/** The CA's metrics, named after istiod's citadel_server_* ones where they mean the same. */
export function registerCaMetrics(registry: Registry, ca: CaSubsystem): void {
  const { stats } = ca;
  const labels = { mode: ca.summary.mode };
  const registers = [registry];
  scrapedCounter(registry, 'meshrelay_ca_csr_total', 'CSRs received (istiod: citadel_server_csr_count)', () => [[labels, stats.csrs]], ['mode']);
  scrapedCounter(registry, 'meshrelay_ca_success_cert_issuance_total', 'Certificates returned (istiod: citadel_server_success_cert_issuance_count)', () => [[labels, stats.issued]], ['mode']);
  scrapedCounter(registry, 'meshrelay_ca_authentication_failure_total', 'CSRs refused for authentication (istiod: citadel_server_authentication_failure_count)', () => stats.authenticationFailures);
  scrapedCounter(registry, 'meshrelay_ca_csr_error_total', 'CSRs answered with an error, by gRPC status', () => [...stats.errors].map(([code, count]) => [{ code }, count] as const), ['code']);
  const signSeconds = new Histogram({
    name: 'meshrelay_ca_sign_seconds', help: 'Time to answer a CSR (local signing or the round trip to istiod)', labelNames: ['mode'], registers,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  });
  stats.onIssued = (seconds) => signSeconds.observe(labels, seconds);
  const expiries = ca.expiries;
  if (!expiries) return;
  new Gauge({
    name: 'meshrelay_ca_root_cert_expiry_timestamp', help: 'Unix time the root certificate expires (istiod: citadel_server_root_cert_expiry_timestamp)', registers,
    collect() { this.set(expiries().root.getTime() / 1000); },
  });
  new Gauge({
    name: 'meshrelay_ca_cert_chain_expiry_timestamp', help: 'Unix time the signing CA certificate expires (istiod: citadel_server_cert_chain_expiry_timestamp)', registers,
    collect() { this.set(expiries().chain.getTime() / 1000); },
  });
}
