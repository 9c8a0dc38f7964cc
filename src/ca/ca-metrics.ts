import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** CA metrics, named after istiod's citadel_server_* ones where they mean the same. */
export class CaMetrics {
  readonly csrs: Counter<'mode'>;
  readonly issued: Counter<'mode'>;
  readonly authenticationFailures: Counter;
  readonly errors: Counter<'code'>;
  readonly signSeconds: Histogram<'mode'>;
  readonly rootExpiry: Gauge;
  readonly chainExpiry: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.csrs = new Counter({ name: 'meshrelay_ca_csr_total', help: 'CSRs received (istiod: citadel_server_csr_count)', labelNames: ['mode'], registers });
    this.issued = new Counter({ name: 'meshrelay_ca_success_cert_issuance_total', help: 'Certificates returned (istiod: citadel_server_success_cert_issuance_count)', labelNames: ['mode'], registers });
    this.authenticationFailures = new Counter({ name: 'meshrelay_ca_authentication_failure_total', help: 'CSRs refused for authentication (istiod: citadel_server_authentication_failure_count)', registers });
    this.errors = new Counter({ name: 'meshrelay_ca_csr_error_total', help: 'CSRs answered with an error, by gRPC status', labelNames: ['code'], registers });
    this.signSeconds = new Histogram({
      name: 'meshrelay_ca_sign_seconds', help: 'Time to answer a CSR (local signing or the round trip to istiod)', labelNames: ['mode'], registers,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    });
    this.rootExpiry = new Gauge({ name: 'meshrelay_ca_root_cert_expiry_timestamp', help: 'Unix time the root certificate expires (istiod: citadel_server_root_cert_expiry_timestamp)', registers });
    this.chainExpiry = new Gauge({ name: 'meshrelay_ca_cert_chain_expiry_timestamp', help: 'Unix time the signing CA certificate expires (istiod: citadel_server_cert_chain_expiry_timestamp)', registers });
  }
}
