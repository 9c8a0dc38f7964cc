import { RelayError } from '../../errors.js';
import { allocateFrame, HEADER_BYTES } from '../../transport/grpc-framing.js';

/**
 * The two ADS response envelopes written straight into their gRPC frame. A response is mostly
 * resource bytes the relay never decodes; protobufjs would copy them into its writer, out of it
 * into a Buffer, and then into the frame, three allocations of the whole response. Here each body
 * is copied once, into a frame sized in a first pass. Fields go in field-number order and
 * proto3 defaults (empty strings) are left out, as protobuf's canonical encoding does
 * (protobuf.dev/programming-guides/encoding: "Length-Delimited Records", "Field Order").
 *
 * Field numbers: envoy/service/discovery/v3/discovery.proto and google/protobuf/any.proto.
 */
const Any = { typeUrl: 1, value: 2 } as const;
const Sotw = { versionInfo: 1, resources: 2, typeUrl: 4, nonce: 5 } as const;
const Delta = { systemVersionInfo: 1, resources: 2, typeUrl: 4, nonce: 5, removedResources: 6 } as const;
const DeltaResource = { version: 1, resource: 2, name: 3 } as const;

export interface ResourceBytes {
  readonly name: string;
  readonly version: string;
  readonly typeUrl: string;
  readonly body: Buffer;
}

export interface SotwResponseFields {
  versionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: readonly ResourceBytes[];
}

export interface DeltaResponseFields {
  systemVersionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: readonly ResourceBytes[];
  removedResources: readonly string[];
}

const varintBytes = (value: number) => (value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : value < 0x10000000 ? 4 : 5);
/** Tag, length and payload of a length-delimited field numbered below 16 (a one-byte tag). */
const fieldBytes = (payloadBytes: number) => 1 + varintBytes(payloadBytes) + payloadBytes;
const stringBytes = (value: string) => (value === '' ? 0 : fieldBytes(Buffer.byteLength(value)));

const anyPayloadBytes = (resource: ResourceBytes) => stringBytes(resource.typeUrl) + fieldBytes(resource.body.length);
const deltaResourcePayloadBytes = (resource: ResourceBytes, anyBytes: number) =>
  stringBytes(resource.version) + fieldBytes(anyBytes) + stringBytes(resource.name);

/** Writes fields into a frame allocated at its final size. */
class FrameWriter {
  readonly frame: Buffer;
  private offset = HEADER_BYTES;

  constructor(messageBytes: number) {
    this.frame = allocateFrame(messageBytes);
  }

  /** The tag and length of a length-delimited field; its payload is written next. */
  open(field: number, payloadBytes: number): this {
    this.frame[this.offset++] = (field << 3) | 2;
    let value = payloadBytes;
    while (value >= 0x80) {
      this.frame[this.offset++] = (value & 0x7f) | 0x80;
      value >>>= 7;
    }
    this.frame[this.offset++] = value;
    return this;
  }

  /** A singular string: left out when empty (proto3's default). */
  string(field: number, value: string): this {
    return value === '' ? this : this.element(field, value);
  }

  /** One element of a repeated string: written even when empty. */
  element(field: number, value: string): this {
    this.open(field, Buffer.byteLength(value));
    this.offset += this.frame.write(value, this.offset, 'utf8');
    return this;
  }

  bytes(field: number, value: Buffer): this {
    this.open(field, value.length);
    this.offset += value.copy(this.frame, this.offset);
    return this;
  }

  any(field: number, resource: ResourceBytes, payloadBytes: number): this {
    return this.open(field, payloadBytes).string(Any.typeUrl, resource.typeUrl).bytes(Any.value, resource.body);
  }

  finish(): Buffer {
    if (this.offset !== this.frame.length) throw new RelayError('MR_INTERNAL', `response frame size mismatch: wrote ${this.offset} of ${this.frame.length} bytes`);
    return this.frame;
  }
}

/** A framed DiscoveryResponse (state of the world) carrying the resources as Any. */
export function frameSotwResponse(fields: SotwResponseFields): Buffer {
  const anyBytes = fields.resources.map(anyPayloadBytes);
  let size = stringBytes(fields.versionInfo) + stringBytes(fields.typeUrl) + stringBytes(fields.nonce);
  for (const payload of anyBytes) size += fieldBytes(payload);
  const writer = new FrameWriter(size).string(Sotw.versionInfo, fields.versionInfo);
  fields.resources.forEach((resource, index) => writer.any(Sotw.resources, resource, anyBytes[index]!));
  return writer.string(Sotw.typeUrl, fields.typeUrl).string(Sotw.nonce, fields.nonce).finish();
}

/** A framed DeltaDiscoveryResponse carrying each resource with its name and version. */
export function frameDeltaResponse(fields: DeltaResponseFields): Buffer {
  const anyBytes = fields.resources.map(anyPayloadBytes);
  const resourceBytes = fields.resources.map((resource, index) => deltaResourcePayloadBytes(resource, anyBytes[index]!));
  let size = stringBytes(fields.systemVersionInfo) + stringBytes(fields.typeUrl) + stringBytes(fields.nonce);
  for (const payload of resourceBytes) size += fieldBytes(payload);
  for (const name of fields.removedResources) size += fieldBytes(Buffer.byteLength(name));
  const writer = new FrameWriter(size).string(Delta.systemVersionInfo, fields.systemVersionInfo);
  fields.resources.forEach((resource, index) => {
    writer.open(Delta.resources, resourceBytes[index]!)
      .string(DeltaResource.version, resource.version)
      .any(DeltaResource.resource, resource, anyBytes[index]!)
      .string(DeltaResource.name, resource.name);
  });
  writer.string(Delta.typeUrl, fields.typeUrl).string(Delta.nonce, fields.nonce);
  for (const name of fields.removedResources) writer.element(Delta.removedResources, name);
  return writer.finish();
}
