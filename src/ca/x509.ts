import { createHash, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { RelayError } from '../errors.js';

/**
 * X.509 pieces built with node-forge's ASN.1 helpers and signed with Node's native crypto: forge's
 * pure-JS RSA signs ~36/s per core, native ~2,800/s (docs/ISTIO-FACTS.md). forge parses with
 * `decodeBitStrings: false` so that re-encoding a parsed element gives back its exact bytes.
 */
const { asn1 } = forge;
type Asn1 = forge.asn1.Asn1;
const { Class, Type } = asn1;

export const Oid = {
  rsaEncryption: '1.2.840.113549.1.1.1',
  ecPublicKey: '1.2.840.10045.2.1',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  sha384WithRsa: '1.2.840.113549.1.1.12',
  sha512WithRsa: '1.2.840.113549.1.1.13',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  ecdsaWithSha512: '1.2.840.10045.4.3.4',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  organizationName: '2.5.4.10',
  commonName: '2.5.4.3',
} as const;

const signatureHashes: Record<string, string> = {
  [Oid.sha256WithRsa]: 'sha256',
  [Oid.sha384WithRsa]: 'sha384',
  [Oid.sha512WithRsa]: 'sha512',
  [Oid.ecdsaWithSha256]: 'sha256',
  [Oid.ecdsaWithSha384]: 'sha384',
  [Oid.ecdsaWithSha512]: 'sha512',
};

function invalid(message: string): RelayError {
  return new RelayError('MR_BAD_CSR', message);
}

// @types/node-forge declares only the old boolean form of fromDer's second argument.
const fromDer = asn1.fromDer as unknown as (bytes: forge.util.ByteStringBuffer, options: { strict: boolean; parseAllBytes: boolean; decodeBitStrings: boolean }) => Asn1;

export function parseDer(der: Buffer): Asn1 {
  return fromDer(forge.util.createBuffer(der.toString('binary')), { strict: true, parseAllBytes: true, decodeBitStrings: false });
}

export function toDer(node: Asn1): Buffer {
  return Buffer.from(asn1.toDer(node).getBytes(), 'binary');
}

function children(node: Asn1): Asn1[] {
  return Array.isArray(node.value) ? node.value : [];
}

function oidOf(node: Asn1 | undefined): string {
  return node && node.type === Type.OID && typeof node.value === 'string' ? asn1.derToOid(node.value) : '';
}

/** BIT STRING content without its leading "unused bits" byte. */
function bitStringBytes(node: Asn1): Buffer {
  if (node.type !== Type.BITSTRING || typeof node.value !== 'string') throw invalid('expected a BIT STRING');
  return Buffer.from(node.value.slice(1), 'binary');
}

function pemBodies(pem: string, label: string): Buffer[] {
  const pattern = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+?)-----END ${label}-----`, 'g');
  return [...pem.matchAll(pattern)].map((match) => Buffer.from(match[1]!.replace(/\s+/g, ''), 'base64'));
}

export function pemToDers(pem: string, label = 'CERTIFICATE'): Buffer[] {
  return pemBodies(pem, label);
}

export function derToPem(der: Buffer, label = 'CERTIFICATE'): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

export interface ParsedCsr {
  /** SubjectPublicKeyInfo exactly as the CSR carries it. */
  spki: Buffer;
  publicKey: KeyObject;
  keyDescription: string;
}

/**
 * Parses a PKCS#10 request and checks its signature with its own key (proof of possession).
 * Accepts RSA 2048–4096 bits with exponent 65537 and ECDSA P-256/P-384, the key types istio-agent generates.
 */
export function parseCsr(pem: string): ParsedCsr {
  const [der, ...rest] = pemBodies(pem, '(?:NEW )?CERTIFICATE REQUEST');
  if (!der || rest.length > 0) throw invalid('csr must be exactly one PEM "CERTIFICATE REQUEST" block');
  let request: Asn1;
  try {
    request = parseDer(der);
  } catch (error) {
    throw invalid(`csr is not valid DER: ${(error as Error).message}`);
  }
  const [info, algorithm, signature] = children(request);
  const infoParts = info ? children(info) : [];
  if (!info || !algorithm || !signature || infoParts.length < 3) throw invalid('csr is not a PKCS#10 CertificationRequest');
  const spki = toDer(infoParts[2]!);
  let publicKey: KeyObject;
  try {
    publicKey = importSpki(infoParts[2]!, spki);
  } catch (error) {
    throw invalid(`csr public key is unreadable: ${(error as Error).message}`);
  }
  const keyDescription = describeKey(publicKey);
  const signatureOid = oidOf(children(algorithm)[0]);
  const hash = signatureHashes[signatureOid];
  if (!hash) throw invalid(`unsupported csr signature algorithm ${signatureOid || '(none)'}`);
  const signedBytes = toDer(info);
  if (!verify(hash, signedBytes, publicKey, bitStringBytes(signature))) {
    throw invalid('csr signature does not verify with its own public key (no proof of possession)');
  }
  return { spki, publicKey, keyDescription };
}

const curveNames: Record<string, { crv: string; bytes: number }> = {
  '1.2.840.10045.3.1.7': { crv: 'P-256', bytes: 32 },
  '1.3.132.0.34': { crv: 'P-384', bytes: 48 },
};

/**
 * Imports a SubjectPublicKeyInfo. OpenSSL's generic SPKI decoder costs ~150 µs a key; RSA keys go
 * in as their PKCS#1 bits (~5 µs) and EC points as JWK (~90 µs), which matters in a CSR storm.
 */
function importSpki(node: Asn1, der: Buffer): KeyObject {
  const [algorithm, keyBits] = children(node);
  const [algorithmOid, parameters] = algorithm ? children(algorithm) : [];
  const bitsBytes = keyBits ? bitStringBytes(keyBits) : Buffer.alloc(0);
  if (oidOf(algorithmOid) === Oid.rsaEncryption) return createPublicKey({ key: bitsBytes, format: 'der', type: 'pkcs1' });
  const curve = curveNames[oidOf(parameters)];
  if (oidOf(algorithmOid) === Oid.ecPublicKey && curve && bitsBytes.length === 1 + 2 * curve.bytes && bitsBytes[0] === 4) {
    const x = bitsBytes.subarray(1, 1 + curve.bytes).toString('base64url');
    const y = bitsBytes.subarray(1 + curve.bytes).toString('base64url');
    return createPublicKey({ key: { kty: 'EC', crv: curve.crv, x, y }, format: 'jwk' });
  }
  return createPublicKey({ key: der, format: 'der', type: 'spki' });
}

function describeKey(key: KeyObject): string {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'rsa') {
    // Checked before the signature: verifying with a huge modulus or exponent is what makes a CSR
    // expensive, and istio-agent only makes 2048–4096-bit keys with exponent 65537 (WORKLOAD_RSA_KEY_SIZE).
    if ((details.modulusLength ?? 0) < 2048) throw invalid(`RSA key of ${details.modulusLength} bits is too small (minimum 2048)`);
    if ((details.modulusLength ?? 0) > 4096) throw invalid(`RSA key of ${details.modulusLength} bits is too large (maximum 4096)`);
    if (details.publicExponent !== 65537n) throw invalid(`RSA public exponent ${details.publicExponent ?? '(none)'} is not 65537`);
    return `RSA-${details.modulusLength}`;
  }
  if (key.asymmetricKeyType === 'ec' && (details.namedCurve === 'prime256v1' || details.namedCurve === 'secp384r1')) {
    return details.namedCurve === 'prime256v1' ? 'ECDSA-P256' : 'ECDSA-P384';
  }
  throw invalid(`unsupported key type ${key.asymmetricKeyType}${details.namedCurve ? ` (${details.namedCurve})` : ''}: use RSA 2048–4096 or ECDSA P-256/P-384`);
}

/** A signing key and what goes into the AlgorithmIdentifier for it. */
function signatureAlgorithm(key: KeyObject): { oid: string; hash: string; withNullParams: boolean } {
  if (key.asymmetricKeyType === 'rsa') return { oid: Oid.sha256WithRsa, hash: 'sha256', withNullParams: true };
  if (key.asymmetricKeyType === 'ec') {
    return key.asymmetricKeyDetails?.namedCurve === 'secp384r1'
      ? { oid: Oid.ecdsaWithSha384, hash: 'sha384', withNullParams: false }
      : { oid: Oid.ecdsaWithSha256, hash: 'sha256', withNullParams: false };
  }
  throw new RelayError('MR_BAD_CA_FILES', `unsupported CA key type ${key.asymmetricKeyType}`);
}

const seq = (...items: Asn1[]) => asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, items);
const oidNode = (oid: string) => asn1.create(Class.UNIVERSAL, Type.OID, false, asn1.oidToDer(oid).getBytes());
const octets = (bytes: Buffer) => asn1.create(Class.UNIVERSAL, Type.OCTETSTRING, false, bytes.toString('binary'));
const bits = (bytes: Buffer) => asn1.create(Class.UNIVERSAL, Type.BITSTRING, false, `\0${bytes.toString('binary')}`);
const bool = (value: boolean) => asn1.create(Class.UNIVERSAL, Type.BOOLEAN, false, value ? '\xff' : '\0');
const integerBytes = (bytes: Buffer) => asn1.create(Class.UNIVERSAL, Type.INTEGER, false, bytes.toString('binary'));

function algorithmIdentifier(algorithm: { oid: string; withNullParams: boolean }): Asn1 {
  return algorithm.withNullParams
    ? seq(oidNode(algorithm.oid), asn1.create(Class.UNIVERSAL, Type.NULL, false, ''))
    : seq(oidNode(algorithm.oid));
}

/** RFC 5280: UTCTime through 2049, GeneralizedTime after. */
function time(date: Date): Asn1 {
  const whole = new Date(Math.floor(date.getTime() / 1000) * 1000);
  return whole.getUTCFullYear() < 2050
    ? asn1.create(Class.UNIVERSAL, Type.UTCTIME, false, asn1.dateToUtcTime(whole))
    : asn1.create(Class.UNIVERSAL, Type.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(whole));
}

function name(attributes: Array<[string, string]>): Asn1 {
  return seq(...attributes.map(([oid, value]) => asn1.create(Class.UNIVERSAL, Type.SET, true, [
    seq(oidNode(oid), asn1.create(Class.UNIVERSAL, Type.UTF8, false, forge.util.encodeUtf8(value))),
  ])));
}

function extension(oid: string, critical: boolean, value: Asn1): Asn1 {
  return seq(oidNode(oid), ...(critical ? [bool(true)] : []), octets(toDer(value)));
}

/** Key usage bits in DER BIT STRING order: digitalSignature(0), keyEncipherment(2), keyCertSign(5), cRLSign(6). */
function keyUsageBits(usages: KeyUsage[]): Asn1 {
  const positions: Record<KeyUsage, number> = { digitalSignature: 0, keyEncipherment: 2, keyCertSign: 5, cRLSign: 6 };
  let byte = 0;
  for (const usage of usages) byte |= 0x80 >> positions[usage];
  let unused = 0;
  while (unused < 7 && (byte & (1 << unused)) === 0) unused++;
  return asn1.create(Class.UNIVERSAL, Type.BITSTRING, false, String.fromCharCode(unused, byte));
}

export type KeyUsage = 'digitalSignature' | 'keyEncipherment' | 'keyCertSign' | 'cRLSign';

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
export function subjectKeyId(spki: Buffer): Buffer {
  const keyBits = bitStringBytes(children(parseDer(spki))[1]!);
  return createHash('sha1').update(keyBits).digest();
}

export interface Issuer {
  /** The issuer's Name exactly as in its certificate (or the subject's, self-signed). */
  name: Buffer;
  /** Its subject key identifier, for the authority key identifier of what it signs. */
  keyId: Buffer | undefined;
  key: KeyObject;
  /**
   * Signs the TBSCertificate; Node's native crypto with `key` unless given (a KMS or HSM could
   * plug in here; the benchmark plugs in node-forge's pure-JS RSA for comparison).
   */
  signTbs?: (tbs: Buffer, hash: string) => Buffer;
}

export interface CertificateTemplate {
  subject: Array<[string, string]>;
  spki: Buffer;
  notBefore: Date;
  notAfter: Date;
  isCa: boolean;
  keyUsage: KeyUsage[];
  extendedKeyUsage: string[];
  uris?: string[];
  dnsNames?: string[];
}

function generalNames(uris: string[], dnsNames: string[]): Asn1 {
  return seq(
    ...dnsNames.map((dns) => asn1.create(Class.CONTEXT_SPECIFIC, 2, false, dns)),
    ...uris.map((uri) => asn1.create(Class.CONTEXT_SPECIFIC, 6, false, uri)),
  );
}

/** Builds the TBSCertificate with forge and signs it natively; returns the certificate's DER. */
export function issueCertificate(template: CertificateTemplate, issuer: Issuer | 'self-signed', selfKey?: KeyObject): Buffer {
  const subjectName = toDer(name(template.subject));
  const signer = issuer === 'self-signed'
    ? { name: subjectName, keyId: subjectKeyId(template.spki), key: selfKey! }
    : issuer;
  const algorithm = signatureAlgorithm(signer.key);
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const uris = template.uris ?? [];
  const dnsNames = template.dnsNames ?? [];
  const extensions: Asn1[] = [
    extension(Oid.keyUsage, true, keyUsageBits(template.keyUsage)),
    ...(template.extendedKeyUsage.length > 0 ? [extension(Oid.extKeyUsage, false, seq(...template.extendedKeyUsage.map(oidNode)))] : []),
    extension(Oid.basicConstraints, true, template.isCa ? seq(bool(true)) : seq()),
    ...(template.isCa ? [extension(Oid.subjectKeyIdentifier, false, octets(subjectKeyId(template.spki)))] : []),
    ...(signer.keyId ? [extension(Oid.authorityKeyIdentifier, false, seq(asn1.create(Class.CONTEXT_SPECIFIC, 0, false, signer.keyId.toString('binary'))))] : []),
    // Istio's workload certificates have an empty subject, so their SAN is critical (RFC 5280 §4.2.1.6).
    ...(uris.length + dnsNames.length > 0 ? [extension(Oid.subjectAltName, template.subject.length === 0, generalNames(uris, dnsNames))] : []),
  ];
  const tbs = seq(
    asn1.create(Class.CONTEXT_SPECIFIC, 0, true, [integerBytes(Buffer.from([2]))]),
    integerBytes(serial),
    algorithmIdentifier(algorithm),
    parseDer(signer.name),
    seq(time(template.notBefore), time(template.notAfter)),
    parseDer(subjectName),
    parseDer(template.spki),
    asn1.create(Class.CONTEXT_SPECIFIC, 3, true, [seq(...extensions)]),
  );
  const tbsDer = toDer(tbs);
  const signature = 'signTbs' in signer && signer.signTbs ? signer.signTbs(tbsDer, algorithm.hash) : sign(algorithm.hash, tbsDer, signer.key);
  return toDer(seq(parseDer(tbsDer), algorithmIdentifier(algorithm), bits(signature)));
}

/** The Name and subject key identifier of a CA certificate, to issue under it. */
export function issuerOf(certificateDer: Buffer, key: KeyObject): Issuer {
  const tbs = children(children(parseDer(certificateDer))[0]!);
  const offset = tbs[0]?.tagClass === Class.CONTEXT_SPECIFIC ? 1 : 0;
  const subject = tbs[offset + 4]!;
  let keyId: Buffer | undefined;
  const extensionsWrapper = tbs.find((node) => node.tagClass === Class.CONTEXT_SPECIFIC && node.type === 3);
  for (const ext of extensionsWrapper ? children(children(extensionsWrapper)[0]!) : []) {
    const parts = children(ext);
    if (oidOf(parts[0]) !== Oid.subjectKeyIdentifier) continue;
    const inner = parseDer(Buffer.from(String(parts.at(-1)!.value), 'binary'));
    keyId = Buffer.from(String(inner.value), 'binary');
  }
  return { name: toDer(subject), keyId, key };
}
