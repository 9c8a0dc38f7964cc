import { makeInformer, type KubeConfig, type KubernetesObject, type ListPromise } from '@kubernetes/client-node';
import type { Logger } from '../log.js';
import { Backoff, defaultBackoff, type BackoffPolicy } from '../transport/backoff.js';

/**
 * A list+watch informer that keeps going: @kubernetes/client-node 1.x stops an informer on any
 * watch error other than 410, so this restarts it with backoff and jitter. `onSnapshot` receives
 * every object currently known after each change.
 */
export class ResilientInformer<T extends KubernetesObject> {
  private readonly informer;
  private readonly backoff: Backoff;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  restarts = 0;

  constructor(
    kubeConfig: KubeConfig,
    readonly path: string,
    list: ListPromise<T>,
    labelSelector: string | undefined,
    private readonly onSnapshot: (objects: readonly T[]) => void,
    private readonly log: Logger,
    backoff: BackoffPolicy = defaultBackoff,
  ) {
    this.backoff = new Backoff(backoff);
    this.informer = makeInformer(kubeConfig, path, list, labelSelector);
    const publish = () => {
      this.backoff.reset();
      this.onSnapshot(this.informer.list());
    };
    this.informer.on('add', publish);
    this.informer.on('update', publish);
    this.informer.on('delete', publish);
    this.informer.on('connect', publish);
    this.informer.on('error', (error: unknown) => this.restart(error));
  }

  async start(): Promise<void> {
    try {
      await this.informer.start();
    } catch (error) {
      this.restart(error);
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    void this.informer.stop();
  }

  private restart(error: unknown): void {
    if (this.stopped) return;
    const delay = this.backoff.nextDelayMs();
    this.restarts++;
    this.log.warn({ path: this.path, err: (error as Error)?.message ?? String(error), retryInMs: delay }, 'watch failed; restarting');
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => void this.start(), delay);
  }
}
