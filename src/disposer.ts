/**
 * Everything a process started, each stopped once, the last started first: the one teardown list,
 * used when a start fails half way and on stop.
 */
export class Disposer {
  private readonly stops: Array<() => unknown> = [];

  defer(stop: () => unknown): void {
    this.stops.push(stop);
  }

  async dispose(): Promise<void> {
    for (const stop of this.stops.splice(0).reverse()) await stop();
  }
}
