import { generateKeyPairSync, sign } from 'node:crypto';
import forge from 'node-forge';

const { asn1 } = forge;
const { Class, Type } = asn1;

/**
 * Builds PKCS#10 CSRs like istio-agent's (ECDSA P-256 or RSA-2048 key, empty subject, a SPIFFE SAN
 * the CA will ignore), so the bench does not depend on openssl being installed.
 */
export function makeCsr(keyType: 'ec-p256' | 'rsa-2048'): string {
  const { privateKey, publicKey } = keyType === 'ec-p256'
    ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const der = (node: forge.asn1.Asn1) => Buffer.from(asn1.toDer(node).getBytes(), 'binary');
  const fromDer = (bytes: Buffer) => asn1.fromDer(forge.util.createBuffer(bytes.toString('binary')));
  const oid = (text: string) => asn1.create(Class.UNIVERSAL, Type.OID, false, asn1.oidToDer(text).getBytes());
  const seq = (...items: forge.asn1.Asn1[]) => asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, items);
  const san = seq(asn1.create(Class.CONTEXT_SPECIFIC, 6, false, 'spiffe://cluster.local/ns/bench/sa/ignored'));
  const extensionRequest = seq(oid('1.2.840.113549.1.9.14'), asn1.create(Class.UNIVERSAL, Type.SET, true, [
    seq(seq(oid('2.5.29.17'), asn1.create(Class.UNIVERSAL, Type.OCTETSTRING, false, der(san).toString('binary')))),
  ]));
  const info = seq(
    asn1.create(Class.UNIVERSAL, Type.INTEGER, false, '\0'),
    seq(),
    fromDer(spki),
    asn1.create(Class.CONTEXT_SPECIFIC, 0, true, [extensionRequest]),
  );
  const infoDer = der(info);
  const ec = keyType === 'ec-p256';
  const algorithm = seq(oid(ec ? '1.2.840.10045.4.3.2' : '1.2.840.113549.1.1.11'), ...(ec ? [] : [asn1.create(Class.UNIVERSAL, Type.NULL, false, '')]));
  const signature = sign('sha256', infoDer, privateKey);
  const request = der(seq(fromDer(infoDer), algorithm, asn1.create(Class.UNIVERSAL, Type.BITSTRING, false, `\0${signature.toString('binary')}`)));
  return `-----BEGIN CERTIFICATE REQUEST-----\n${request.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE REQUEST-----\n`;
}
