import { readFileSync } from 'node:fs';
import { RelayError } from '../errors.js';

/** Reads a file named in config, failing with a message that says which setting named it. */
export function readConfiguredFile(file: string, setting: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new RelayError('MR_BAD_CONFIG', `cannot read ${setting} ${file}: ${(error as Error).message}`);
  }
}
