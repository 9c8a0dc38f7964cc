import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { RelayError } from '../errors.js';

/** Reads a file named in config, failing with a message that says which setting named it. */
export function readConfiguredFile(file: string, setting: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new RelayError('MR_BAD_CONFIG', `cannot read ${setting} ${file}: ${(error as Error).message}`);
  }
}

/**
 * Writes `file` whole or not at all (a temporary file renamed over it): another process of the
 * relay (a worker, `meshrelay token`) reading it meanwhile sees the old contents or the new, never
 * a truncated file.
 */
export function writeFileAtomically(file: string, data: string | Buffer, mode = 0o644): void {
  const temporary = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, data, { mode });
    renameSync(temporary, file);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}
