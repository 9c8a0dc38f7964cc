import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';

/**
 * Calls `onChange` (once, after `settleMs` of quiet) when anything in the directories of `files`
 * changes. Directories, not files: Kubernetes updates a mounted Secret or ConfigMap by swapping a
 * symlink in its directory, which a watch on the old file never sees.
 */
export function watchFiles(files: string[], onChange: () => void, settleMs = 200): { close(): void } {
  let timer: NodeJS.Timeout | undefined;
  const watchers: FSWatcher[] = [];
  for (const directory of new Set(files.filter(Boolean).map((file) => path.dirname(file)))) {
    const watcher = watch(directory, () => {
      clearTimeout(timer);
      timer = setTimeout(onChange, settleMs);
    });
    watcher.on('error', () => {});
    watchers.push(watcher);
  }
  return {
    close: () => {
      clearTimeout(timer);
      for (const watcher of watchers) watcher.close();
    },
  };
}
