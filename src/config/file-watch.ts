import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';

export interface WatchOptions {
  /** Quiet time after the last change before `onChange` runs (an update is several writes). */
  settleMs?: number;
  /** A watch that fails (the directory went away); the last good contents stay in use. */
  onError?: (error: Error) => void;
}

/**
 * Calls `onChange` (once, after `settleMs` of quiet) when anything in `directories` changes. The
 * one watcher for reloaded files: TLS files, CA directories, meshNetworks.
 */
export function watchDirectories(directories: string[], onChange: () => void, options: WatchOptions = {}): { close(): void } {
  let timer: NodeJS.Timeout | undefined;
  const watchers: FSWatcher[] = [];
  for (const directory of new Set(directories)) {
    const watcher = watch(directory, () => {
      clearTimeout(timer);
      timer = setTimeout(onChange, options.settleMs ?? 200);
    });
    watcher.on('error', (error) => options.onError?.(error));
    watchers.push(watcher);
  }
  return {
    close: () => {
      clearTimeout(timer);
      for (const watcher of watchers) watcher.close();
    },
  };
}

/**
 * Watches the directories of `files`, not the files: Kubernetes updates a mounted Secret or
 * ConfigMap by swapping a symlink in its directory, and editors replace a file rather than write
 * it; a watch on the old file never sees either.
 */
export function watchFiles(files: string[], onChange: () => void, options: WatchOptions = {}): { close(): void } {
  return watchDirectories(files.filter(Boolean).map((file) => path.dirname(file)), onChange, options);
}
