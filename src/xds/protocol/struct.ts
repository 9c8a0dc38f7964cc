/** Conversion between google.protobuf.Struct (protobufjs object form) and plain JSON values. */
// protobufjs defines the well-known types itself (its "common" protos) with camelCase field names,
// whatever keepCase says, so Value's fields are stringValue, structValue, ...

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export interface ProtoValue {
  nullValue?: number | string;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: ProtoStruct;
  listValue?: { values?: ProtoValue[] };
}
export interface ProtoStruct {
  fields?: Record<string, ProtoValue>;
}

export function valueToJson(value: ProtoValue | undefined): JsonValue {
  if (!value) return null;
  // Decoded messages keep defaults on the prototype; only the field that is set is an own property.
  const has = (field: keyof ProtoValue) => Object.hasOwn(value, field);
  if (has('stringValue')) return value.stringValue!;
  if (has('numberValue')) return value.numberValue!;
  if (has('boolValue')) return value.boolValue!;
  if (has('structValue')) return structToJson(value.structValue);
  if (has('listValue')) return (value.listValue?.values ?? []).map(valueToJson);
  return null;
}

export function structToJson(struct: ProtoStruct | undefined | null): { [key: string]: JsonValue } {
  const out: { [key: string]: JsonValue } = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) out[key] = valueToJson(value);
  return out;
}

export function jsonToValue(value: JsonValue): ProtoValue {
  if (value === null) return { nullValue: 0 };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(jsonToValue) } };
  return { structValue: jsonToStruct(value) };
}

export function jsonToStruct(object: { [key: string]: JsonValue }): ProtoStruct {
  const fields: Record<string, ProtoValue> = {};
  for (const [key, value] of Object.entries(object)) fields[key] = jsonToValue(value);
  return { fields };
}
