import type { z } from 'zod';
import { kebabFromCamel, objectShape } from './load.js';

interface FieldDef {
  type: string;
  innerType?: { def: FieldDef };
  defaultValue?: unknown;
  entries?: Record<string, string>;
  element?: { def: FieldDef };
}

/** A field's value type as a user writes it on the command line. */
function valueSyntax(def: FieldDef): string {
  switch (def.type) {
    case 'enum': return Object.values(def.entries ?? {}).join('|');
    case 'array': return `${def.element ? valueSyntax(def.element.def) : 'value'},…`;
    case 'record': return 'key=value,…';
    case 'boolean': return '';
    case 'union': return 'value';
    default: return def.type;
  }
}

function defaultText(value: unknown): string {
  if (value === undefined) return '';
  if (value === '') return '(empty)';
  if (Array.isArray(value)) return value.length === 0 ? '(none)' : value.join(',');
  if (typeof value === 'object' && value !== null) return Object.keys(value).length === 0 ? '(none)' : Object.entries(value).map(([k, v]) => `${k}=${String(v)}`).join(',');
  return String(value);
}

/**
 * Every flag of a command, its value and its default, read from the command's schema: the one
 * definition of what the command accepts, so the help cannot drift from it.
 */
export function flagHelp(schema: z.ZodType): string {
  const rows = Object.entries(objectShape(schema)).map(([key, field]) => {
    let def = (field as unknown as { def: FieldDef }).def;
    let fallback: unknown;
    let optional = false;
    while (def.type === 'default' || def.type === 'optional') {
      if (def.type === 'default') fallback = def.defaultValue;
      else optional = true;
      def = def.innerType!.def;
    }
    const syntax = valueSyntax(def);
    const flag = `--${kebabFromCamel(key)}${syntax ? ` <${syntax}>` : ''}`;
    const shown = fallback !== undefined ? `default ${defaultText(fallback)}` : optional ? 'default: derived (see README)' : 'required';
    return [flag, shown] as const;
  });
  rows.push(['--config <file>', 'a YAML file of these keys (camelCase); flags win over MESHRELAY_* env, which wins over the file']);
  const width = Math.min(48, Math.max(...rows.map(([flag]) => flag.length)) + 2);
  return rows.map(([flag, shown]) => (flag.length < width ? `  ${flag.padEnd(width)}${shown}` : `  ${flag}\n  ${' '.repeat(width)}${shown}`)).join('\n');
}
