import { readFileSync } from 'node:fs';

/** The package's version (package.json, two levels above this file once built into dist/src/). */
export const RELAY_VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
