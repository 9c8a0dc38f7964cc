import { collectDefaultMetrics, Registry } from 'prom-client';

let processRegistry: Registry | undefined;

/**
 * process_* and nodejs_* (memory, CPU, event loop lag), as istiod exports Go's. Made once per
 * process: they describe the process, not one relay in it, and prom-client never stops the
 * event-loop monitor it starts for them.
 */
export function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}
