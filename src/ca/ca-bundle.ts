import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { RelayError } from '../errors.js';
import type { Logger } from '../log.js';
import { watchDirectories } from '../config/file-watch.js';
import { issuerOf, pemToDers, type Issuer } from './x509.js';

/** Istio's plugged-in CA files (docs/ISTIO-FACTS.md), as istiod reads them from its cacerts directory. */
export const CaFiles = {
  cert: 'ca-cert.pem',
  key: 'ca-key.pem',
  chain: 'cert-chain.pem',
  root: 'root-cert.pem',
} as const;

/** The CA files' contents: what signing worker threads build their own bundle from. */
export interface CaPems {
  cert: string;
  key: string;
  /** cert-chain.pem, or the CA certificate when there is none. */
  chain: string;
  root: string;
}

export interface CaBundle {
  pems: CaPems;
  issuer: Issuer;
  certificate: X509Certificate;
  /** PEM of each certificate between the signing CA and the root, signing CA first. */
  chainPems: string[];
  rootPem: string;
  root: X509Certificate;
  loadedAt: Date;
}

function bad(message: string): RelayError {
  return new RelayError('MR_BAD_CA_FILES', message);
}

/** Reads and checks a CA directory: the key matches the certificate, which is a CA chained to the root. */
export function loadCaBundle(directory: string): CaBundle {
  const read = (file: string) => {
    const full = path.join(directory, file);
    try {
      return readFileSync(full, 'utf8');
    } catch (error) {
      throw bad(`cannot read ${full}: ${(error as Error).message}`);
    }
  };
  const cert = read(CaFiles.cert);
  const chainFile = path.join(directory, CaFiles.chain);
  return parseCaBundle({ cert, key: read(CaFiles.key), root: read(CaFiles.root), chain: existsSync(chainFile) ? read(CaFiles.chain) : cert }, directory);
}

/** Checks CA file contents (read from `where`): the key matches the certificate, which is a CA chained to the root. */
export function parseCaBundle(pems: CaPems, where: string): CaBundle {
  let key: KeyObject;
  let certificate: X509Certificate;
  let root: X509Certificate;
  try {
    key = createPrivateKey(pems.key);
    certificate = new X509Certificate(pems.cert);
    root = new X509Certificate(pems.root);
  } catch (error) {
    throw bad(`CA files in ${where} are not valid PEM: ${(error as Error).message}`);
  }
  if (!certificate.checkPrivateKey(key)) throw bad(`${CaFiles.key} does not match ${CaFiles.cert} in ${where}`);
  if (!certificate.ca) throw bad(`${CaFiles.cert} in ${where} is not a CA certificate`);
  // cert-chain.pem holds the signing CA and any intermediates up to (not including) the root.
  const chainPems = pemToDers(pems.chain).map((der) => new X509Certificate(der).toString())
    .filter((pem) => new X509Certificate(pem).fingerprint256 !== root.fingerprint256);
  const ders = pemToDers(pems.cert);
  return {
    pems,
    issuer: issuerOf(ders[0]!, key),
    certificate,
    chainPems: chainPems.length > 0 ? chainPems : [certificate.toString()],
    rootPem: root.toString(),
    root,
    loadedAt: new Date(),
  };
}

/**
 * Holds the current CA bundle and reloads it when the files change (as istiod does for plugged
 * CAs). A broken update is logged and ignored: the last good bundle keeps signing.
 */
export class CaBundleWatcher {
  private current: CaBundle;
  private watch: { close(): void } | undefined;
  private readonly listeners = new Set<(bundle: CaBundle) => void>();

  constructor(private readonly directory: string, private readonly log: Logger) {
    this.current = loadCaBundle(directory);
  }

  get bundle(): CaBundle {
    return this.current;
  }

  onReload(listener: (bundle: CaBundle) => void): void {
    this.listeners.add(listener);
  }

  start(): void {
    this.watch = watchDirectories([this.directory], () => this.reload(), {
      onError: (error) => this.log.warn({ err: error.message, directory: this.directory }, 'CA directory watch failed'),
    });
  }

  /** Loads the files again; returns whether the new bundle is in use. */
  reload(): boolean {
    try {
      const next = loadCaBundle(this.directory);
      if (next.certificate.fingerprint256 === this.current.certificate.fingerprint256 && next.rootPem === this.current.rootPem) return true;
      this.current = next;
      this.log.info({ directory: this.directory, subject: next.certificate.subject, notAfter: next.certificate.validTo }, 'CA files reloaded');
      for (const listener of this.listeners) listener(next);
      return true;
    } catch (error) {
      this.log.error({ err: (error as Error).message, directory: this.directory }, 'CA files changed but are not usable; still signing with the previous CA');
      return false;
    }
  }

  close(): void {
    this.watch?.close();
  }
}
