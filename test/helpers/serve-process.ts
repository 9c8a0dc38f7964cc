import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

/** `meshrelay serve` as its own process (the only way to run its workers), with the addresses it printed. */
export interface Serving { child: ChildProcess; xds: string; tls: string | undefined; admin: string; exit: Promise<number | null>; printed: string }

export async function serveProcess(args: string[]): Promise<Serving> {
  const child = spawn(process.execPath, [cli, 'serve', '--xds-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MESHRELAY_LOG_LEVEL: 'warn' },
  });
  // The last of stderr is kept, so a serve that exits at start says why.
  let errors = '';
  child.stderr!.on('data', (chunk: Buffer) => { errors = (errors + chunk.toString()).slice(-4000); });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const printed = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('Point an ADS client')) resolve(out);
    });
    child.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${out}\nstderr: ${errors}`)));
  });
  return { child, exit, printed, xds: /xDS \(plaintext ADS, SotW \+ Delta\):\s+(\S+)/.exec(printed)![1]!, tls: /xDS \(TLS\):\s+(\S+)/.exec(printed)?.[1], admin: `http://${/admin:\s+http:\/\/(\S+?)\//.exec(printed)![1]!}` };
}
