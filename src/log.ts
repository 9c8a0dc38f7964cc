import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Every logger made from one root, so the level can be changed for all of them at runtime. */
const families = new WeakMap<Logger, Set<WeakRef<Logger>>>();

/** Structured JSON logs on stderr, so stdout stays free for what a command prints for people. */
export function createLogger(level: LevelWithSilent = 'info'): Logger {
  const members = new Set<WeakRef<Logger>>();
  const root = pino({
    level,
    base: { app: 'meshrelay' },
    // pino children keep the level they were born with; remember them to change them all.
    onChild: (child) => { members.add(new WeakRef(child)); },
  }, pino.destination(2));
  families.set(root, members);
  return root;
}

/** Changes the level of a root logger and of every logger derived from it. */
export function setLogLevel(root: Logger, level: LevelWithSilent): void {
  root.level = level;
  for (const reference of families.get(root) ?? []) {
    const child = reference.deref();
    if (child) child.level = level;
    else families.get(root)!.delete(reference);
  }
}
