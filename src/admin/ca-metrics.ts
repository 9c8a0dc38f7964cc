import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { CaSubsystem } from '../ca/ca-setup.js';

/** The CA's metrics, named after istiod's citadel_server_* ones where they mean the same. */
export function registerCaMetrics(registry: Registry, ca: CaSubsystem): void {
  const { stats } = ca;
  const labels = { mode: ca.summary.mode };
  const registers = [registry];
  new Counter({
    name: 'meshrelay_ca_csr_total', help: 'CSRs received (istiod: citadel_server_csr_count)', labelNames: ['mode'], registers,
    collect() { this.reset(); this.inc(labels, stats.csrs); },
  });
  new Counter({
    name: 'meshrelay_ca_success_cert_issuance_total', help: 'Certificates returned (istiod: citadel_server_success_cert_issuance_count)', labelNames: ['mode'], registers,
    collect() { this.reset(); this.inc(labels, stats.issued); },
  });
  new Counter({
    name: 'meshrelay_ca_authentication_failure_total', help: 'CSRs refused for authentication (istiod: citadel_server_authentication_failure_count)', registers,
    collect() { this.reset(); this.inc(stats.authenticationFailures); },
  });
  new Counter({
    name: 'meshrelay_ca_csr_error_total', help: 'CSRs answered with an error, by gRPC status', labelNames: ['code'], registers,
    collect() {
      this.reset();
      for (const [code, count] of stats.errors) this.inc({ code }, count);
    },
  });
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
