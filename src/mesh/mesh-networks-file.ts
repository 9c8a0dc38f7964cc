import { readFileSync } from 'node:fs';
import { watchFiles } from '../config/file-watch.js';
import { RelayError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseMeshNetworks, type MeshNetworks } from './mesh-networks.js';
import type { NetworkTopology } from './network-topology.js';

/**
 * A meshNetworks file, reloaded when it changes. A broken edit is logged and ignored: the last
 * good topology stays in force.
 */
export class MeshNetworksFile {
  private watch: { close(): void } | undefined;

  constructor(private readonly file: string, private readonly topology: NetworkTopology, private readonly log: Logger) {
    topology.set({ name: `file:${file}`, networks: this.read() });
  }

  start(): void {
    this.watch = watchFiles([this.file], () => this.reload(), {
      onError: (error) => this.log.warn({ err: error.message, file: this.file }, 'meshNetworks watch failed'),
    });
  }

  reload(): void {
    try {
      this.topology.set({ name: `file:${this.file}`, networks: this.read() });
      this.log.info({ file: this.file }, 'meshNetworks reloaded');
    } catch (error) {
      this.log.error({ err: (error as Error).message, file: this.file }, 'meshNetworks file changed but is not usable; keeping the previous topology');
    }
  }

  close(): void {
    this.watch?.close();
  }

  private read(): MeshNetworks {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (error) {
      throw new RelayError('MR_BAD_CONFIG', `cannot read meshNetworks file ${this.file}: ${(error as Error).message}`);
    }
    return parseMeshNetworks(text, this.file);
  }
}
