/**
 * What the CA did, counted where it happens; admin/ exports it to Prometheus at scrape time
 * (admin/ca-metrics.ts), like every other subsystem's figures.
 */
export class CaStats {
  csrs = 0;
  issued = 0;
  authenticationFailures = 0;
  /** CSRs answered with an error, by gRPC status name. */
  readonly errors = new Map<string, number>();
  /** Called per certificate returned, with how long the answer took. */
  onIssued: ((seconds: number) => void) | undefined;

  countError(status: string): void {
    this.errors.set(status, (this.errors.get(status) ?? 0) + 1);
  }
}
