import { Envelopes, type DiscoveryRequest } from './envelopes.js';

/**
 * SotW DiscoveryRequests with a fast path for what nearly all of them are: an ACK carrying the
 * version, the nonce, the type and every name the stream subscribes to (xds_protocol.rst: a SotW
 * request always carries the whole set). On profile M that is 300 names per ACK, and decoding them
 * was a fifth of the relay's CPU in a SotW fan-out. A stream sends the same list again and again,
 * byte for byte: each stream's decoder compares the list in a request with the few it saw last
 * (a memcmp) and reuses their decoded names. Lists are shared between streams, so the VMs of a
 * group hold one copy.
 *
 * Only fields 1 (version_info), 3 (resource_names), 4 (type_url) and 5 (response_nonce) are taken
 * here, each length-delimited (envoy/service/discovery/v3/discovery.proto). Anything else — a node,
 * an error_detail, resource_locators, an unknown field or malformed bytes — goes to protobufjs,
 * which decodes it or says what is wrong with it.
 */
const Field = { versionInfo: 1, resourceNames: 3, typeUrl: 4, responseNonce: 5 } as const;
const LENGTH_DELIMITED = 2;
const NAME_TAG = (Field.resourceNames << 3) | LENGTH_DELIMITED;
/** Lists a stream's decoder keeps: one per type it subscribes to by name, in practice EDS and RDS. */
const LISTS_PER_STREAM = 4;
/** Distinct lists shared across streams (a group's VMs subscribe alike). */
const SHARED_LISTS = 256;

/** A name list as its wire bytes (every field-3 entry, tags included) and as decoded names. */
interface NameList {
  readonly bytes: Buffer;
  /** Frozen: the same array goes to every request that carries these bytes. */
  readonly names: readonly string[];
}

/** Lists by their bytes (as a latin1 key), least recently found first. */
const shared = new Map<string, NameList>();

function sharedList(bytes: Buffer, names: string[]): NameList {
  const key = bytes.toString('latin1');
  let list = shared.get(key);
  if (list) shared.delete(key);
  else list = { bytes: Buffer.from(bytes), names: Object.freeze(names) };
  shared.set(key, list);
  if (shared.size > SHARED_LISTS) shared.delete(shared.keys().next().value!);
  return list;
}

/** A varint at `offset` below 2³⁵, and where it ends; undefined when cut off. */
function readVarint(bytes: Buffer, offset: number): [value: number, next: number] | undefined {
  let value = 0;
  for (let shift = 0, at = offset; shift < 35 && at < bytes.length; shift += 7, at++) {
    const byte = bytes[at]!;
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, at + 1];
  }
  return undefined;
}

/** One stream's decoder of SotW requests. */
export class SotwRequestDecoder {
  /** The lists this stream sent last, most recent first. */
  private readonly recent: NameList[] = [];

  decode(bytes: Buffer): DiscoveryRequest {
    return this.decodeAck(bytes) ?? Envelopes.decodeRequest(bytes);
  }

  private decodeAck(bytes: Buffer): DiscoveryRequest | undefined {
    let versionInfo = '';
    let typeUrl = '';
    let responseNonce = '';
    let resourceNames: readonly string[] | undefined;
    for (let offset = 0; offset < bytes.length;) {
      if (bytes[offset] === NAME_TAG) {
        if (resourceNames !== undefined) return undefined;
        const list = this.known(bytes, offset) ?? this.read(bytes, offset);
        if (!list) return undefined;
        resourceNames = list.names;
        offset += list.bytes.length;
        continue;
      }
      const tag = readVarint(bytes, offset);
      if (!tag || (tag[0] & 7) !== LENGTH_DELIMITED) return undefined;
      const length = readVarint(bytes, tag[1]);
      if (!length) return undefined;
      const start = length[1];
      const end = start + length[0];
      if (end > bytes.length) return undefined;
      switch (tag[0] >>> 3) {
        case Field.versionInfo: versionInfo = bytes.toString('utf8', start, end); break;
        case Field.typeUrl: typeUrl = bytes.toString('utf8', start, end); break;
        case Field.responseNonce: responseNonce = bytes.toString('utf8', start, end); break;
        default: return undefined;
      }
      offset = end;
    }
    // The shared list is frozen; the request type's `string[]` is only ever read.
    const names = (resourceNames ?? []) as string[];
    return { version_info: versionInfo, node: null, resource_names: names, type_url: typeUrl, response_nonce: responseNonce, error_detail: null };
  }

  /** One of this stream's recent lists, if `bytes` holds exactly it at `offset` (no further name after it). */
  private known(bytes: Buffer, offset: number): NameList | undefined {
    for (const list of this.recent) {
      const end = offset + list.bytes.length;
      if (end <= bytes.length && bytes[end] !== NAME_TAG && bytes.compare(list.bytes, 0, list.bytes.length, offset, end) === 0) return list;
    }
    return undefined;
  }

  /** The field-3 entries from `offset` on, as far as they run uninterrupted, decoded name by name. */
  private read(bytes: Buffer, offset: number): NameList | undefined {
    const names: string[] = [];
    let at = offset;
    while (at < bytes.length && bytes[at] === NAME_TAG) {
      const length = readVarint(bytes, at + 1);
      if (!length || length[1] + length[0] > bytes.length) return undefined;
      names.push(bytes.toString('utf8', length[1], length[1] + length[0]));
      at = length[1] + length[0];
    }
    const list = sharedList(bytes.subarray(offset, at), names);
    this.recent.unshift(list);
    if (this.recent.length > LISTS_PER_STREAM) this.recent.pop();
    return list;
  }
}
