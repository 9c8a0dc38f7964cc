import type { Logger } from '../log.js';

/** SIGTERM/SIGINT: stop gracefully, and exit anyway when the grace period runs out. */
export function onTerminate(log: Logger, graceMs: number, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, graceMs }, 'shutting down');
    const deadline = setTimeout(() => {
      log.warn('grace period over; exiting');
      process.exit(0);
    }, graceMs + 1000);
    deadline.unref();
    stop().then(() => process.exit(0), (error: unknown) => {
      log.error({ err: error }, 'error while shutting down');
      process.exit(1);
    });
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
