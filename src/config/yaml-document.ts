import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { RelayError } from '../errors.js';

/** Parses YAML and validates it, with errors that name the source and the offending key. */
export function parseYamlDocument<S extends z.ZodType>(schema: S, text: string, source: string): z.infer<S> {
  let document: unknown;
  try {
    document = parseYaml(text) ?? {};
  } catch (error) {
    throw new RelayError('MR_BAD_CONFIG', `${source}: not valid YAML: ${(error as Error).message}`);
  }
  const parsed = schema.safeParse(document);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new RelayError('MR_BAD_CONFIG', `${source}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return parsed.data;
}
