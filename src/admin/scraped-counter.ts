import { Counter, type Registry } from 'prom-client';

type Reading = number | Iterable<readonly [Record<string, string>, number]>;

/**
 * A Prometheus counter whose value is read from a subsystem's own tally at scrape time (so the hot
 * path only adds to a plain field): a total, or one value per label set.
 */
export function scrapedCounter(registry: Registry, name: string, help: string, read: () => Reading, labelNames: string[] = []): void {
  new Counter({
    name, help, labelNames, registers: [registry],
    collect() {
      this.reset();
      const reading = read();
      if (typeof reading === 'number') this.inc(reading);
      else for (const [labels, value] of reading) this.inc(labels, value);
    },
  });
}
