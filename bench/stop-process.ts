import type { ChildProcess } from 'node:child_process';

/** SIGTERM, then SIGKILL after `killAfterMs`; resolves once the process has exited. */
export async function stopProcess(child: ChildProcess | undefined, killAfterMs: number): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  await exited;
  clearTimeout(timer);
}
