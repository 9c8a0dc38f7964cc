import { TYPE_PREFIX, TypeUrl } from './type-urls.js';

const wrappedResourceType = `${TYPE_PREFIX}envoy.service.discovery.v3.Resource`;
/** Istio types that are one unnamed resource per proxy. */
const unnamedTypes = new Set<string>([TypeUrl.nameTable, TypeUrl.proxyConfig]);

/**
 * SotW responses carry bare Anys, so the name must come from inside the resource. Every xDS
 * resource keeps its name in field 1 (`name`, or `cluster_name` for ClusterLoadAssignment), so one
 * field is read off the wire instead of decoding the whole message.
 */
export function resourceName(typeUrl: string, body: Uint8Array): string {
  if (unnamedTypes.has(typeUrl)) return '';
  // envoy.service.discovery.v3.Resource { version = 1; resource = 2; name = 3; }
  const field = typeUrl === wrappedResourceType ? 3 : 1;
  return readStringField(body, field) ?? '';
}

function readStringField(bytes: Uint8Array, wanted: number): string | undefined {
  let offset = 0;
  while (offset < bytes.length) {
    const [tag, afterTag] = readVarint(bytes, offset);
    offset = afterTag;
    const fieldNumber = Math.floor(tag / 8);
    const wireType = tag & 7;
    switch (wireType) {
      case 0: offset = readVarint(bytes, offset)[1]; break;
      case 1: offset += 8; break;
      case 5: offset += 4; break;
      case 2: {
        const [length, start] = readVarint(bytes, offset);
        const end = start + length;
        if (end > bytes.length) return undefined;
        if (fieldNumber === wanted) return Buffer.from(bytes.buffer, bytes.byteOffset + start, length).toString('utf8');
        offset = end;
        break;
      }
      default: return undefined;
    }
  }
  return undefined;
}

function readVarint(bytes: Uint8Array, start: number): [number, number] {
  let value = 0;
  let multiplier = 1;
  let offset = start;
  while (offset < bytes.length) {
    const byte = bytes[offset++]!;
    value += (byte & 0x7f) * multiplier;
    if ((byte & 0x80) === 0) return [value, offset];
    multiplier *= 128;
    if (offset - start > 10) break;
  }
  return [value, bytes.length + 1];
}
