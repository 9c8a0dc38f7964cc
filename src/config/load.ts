import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { RelayError } from '../errors.js';

/**
 * Builds a config from flags > env (MESHRELAY_*) > config file > defaults (docs/ISTIO-FACTS.md), and
 * validates it with the command's schema. Errors name the offending key and where it came from.
 * This is the only place that reads process.env.
 */
export function loadConfig<S extends z.ZodType>(schema: S, argv: string[], env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const flags = parseFlags(argv);
  const configFile = (flags.get('config') as string | undefined) ?? env.MESHRELAY_CONFIG;
  flags.delete('config');
  const fromFile = configFile ? readConfigFile(configFile) : {};
  const fromEnv: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('MESHRELAY_') || name === 'MESHRELAY_CONFIG' || value === undefined) continue;
    fromEnv[camelFromSnake(name.slice('MESHRELAY_'.length))] = value;
  }
  const fromFlags: Record<string, unknown> = {};
  for (const [flag, value] of flags) fromFlags[camelFromKebab(flag)] = value;

  const shape = objectShape(schema);
  const merged: Record<string, unknown> = { ...fromFile };
  for (const [source, values] of [['environment', fromEnv], ['flag', fromFlags]] as const) {
    for (const [key, raw] of Object.entries(values)) {
      const field = shape[key];
      if (!field) {
        const name = source === 'flag' ? `--${kebabFromCamel(key)}` : `MESHRELAY_${snakeFromCamel(key)}`;
        throw configError(`unknown ${source} ${name}`);
      }
      merged[key] = coerce(raw, field, key);
    }
  }
  const result = schema.safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = issue.path.join('.') || '(config)';
    throw configError(`invalid ${key} (flag --${kebabFromCamel(String(issue.path[0] ?? ''))}): ${issue.message}`);
  }
  return result.data;
}

function configError(message: string): RelayError {
  return new RelayError('MR_BAD_CONFIG', message);
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw configError(`cannot read config file ${file}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (error) {
    throw configError(`config file ${file} is not valid YAML: ${(error as Error).message}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw configError(`config file ${file} must hold a mapping of keys`);
  return parsed as Record<string, unknown>;
}

/** `--key value`, `--key=value`, and bare `--flag` (true). */
function parseFlags(argv: string[]): Map<string, string | boolean> {
  const flags = new Map<string, string | boolean>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw configError(`unexpected argument "${arg}"`);
    const eq = arg.indexOf('=');
    if (eq > 0) {
      flags.set(arg.slice(2, eq), arg.slice(eq + 1));
    } else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) {
      flags.set(arg.slice(2), argv[++i]!);
    } else {
      flags.set(arg.slice(2), true);
    }
  }
  return flags;
}

export function objectShape(schema: z.ZodType): Record<string, z.ZodType> {
  let current: unknown = schema;
  // Unwrap refinements and pipes down to the object.
  for (let depth = 0; depth < 5; depth++) {
    const def = (current as { def?: { type?: string; shape?: Record<string, z.ZodType>; in?: unknown; schema?: unknown } }).def;
    if (def?.shape) return def.shape;
    current = def?.in ?? def?.schema;
  }
  return {};
}

function innerType(field: z.ZodType): string {
  let current = field as unknown as { def: { type: string; innerType?: unknown; options?: unknown[] } };
  while (current.def.type === 'default' || current.def.type === 'optional') current = current.def.innerType as typeof current;
  if (current.def.type === 'union') {
    const types = (current.def.options ?? []).map((option) => (option as typeof current).def.type);
    return types.includes('string') || types.includes('literal') ? 'string' : types[0] ?? 'string';
  }
  return current.def.type;
}

/** Strings from flags and env become the field's type: numbers, lists (a,b) and maps (k=v,k2=v2). */
function coerce(raw: unknown, field: z.ZodType, key: string): unknown {
  if (typeof raw !== 'string') {
    if (raw === true && innerType(field) === 'boolean') return true;
    if (raw === true) throw configError(`--${kebabFromCamel(key)} needs a value`);
    return raw;
  }
  switch (innerType(field)) {
    case 'number': {
      const value = Number(raw);
      if (raw.trim() === '' || Number.isNaN(value)) throw configError(`invalid ${key}: "${raw}" is not a number`);
      return value;
    }
    case 'boolean': return raw === 'true' || raw === '1';
    case 'array': return raw.split(',').map((item) => item.trim()).filter(Boolean);
    case 'record': {
      const out: Record<string, string> = {};
      for (const pair of raw.split(',').map((item) => item.trim()).filter(Boolean)) {
        const [name, value] = pair.split('=');
        if (!name || value === undefined) throw configError(`invalid ${key}: "${pair}" is not key=value`);
        out[name] = value;
      }
      return out;
    }
    default: return raw;
  }
}

const camelFromKebab = (text: string) => text.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
const camelFromSnake = (text: string) => text.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
export const kebabFromCamel = (text: string) => text.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const snakeFromCamel = (text: string) => text.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
