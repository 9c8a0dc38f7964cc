import { generateKeyPairSync } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { readConfiguredFile } from '../config/files.js';
import type { Logger } from '../log.js';
import type { TlsOptions } from '../transport/grpc-server.js';
import type { LocalSigner } from './local-signer.js';

/** The TLS material of the relay's 15012 listener, and a way to hear when it changes. */
export interface ServingCertificate {
  current(): TlsOptions;
  onChange(listener: (tls: TlsOptions) => void): void;
  close(): void;
}

function readTls(certFile: string, keyFile: string, clientCaFile: string): TlsOptions {
  return {
    cert: readConfiguredFile(certFile, 'tlsCertFile'),
    key: readConfiguredFile(keyFile, 'tlsKeyFile'),
    ...(clientCaFile ? { clientCa: readConfiguredFile(clientCaFile, 'tlsClientCaFile') } : {}),
  };
}

/** Certificate files (forward mode, or any operator-provided certificate), reloaded when they change. */
export class FileServingCertificate implements ServingCertificate {
  private tls: TlsOptions;
  private readonly watchers: FSWatcher[] = [];
  private readonly listeners = new Set<(tls: TlsOptions) => void>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly files: { cert: string; key: string; clientCa: string }, private readonly log: Logger) {
    this.tls = readTls(files.cert, files.key, files.clientCa);
    const directories = new Set([files.cert, files.key, files.clientCa].filter(Boolean).map((file) => path.dirname(file)));
    for (const directory of directories) {
      const watcher = watch(directory, () => {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.reload(), 200);
      });
      watcher.on('error', () => {});
      this.watchers.push(watcher);
    }
  }

  current(): TlsOptions {
    return this.tls;
  }

  onChange(listener: (tls: TlsOptions) => void): void {
    this.listeners.add(listener);
  }

  close(): void {
    clearTimeout(this.timer);
    for (const watcher of this.watchers) watcher.close();
  }

  private reload(): void {
    try {
      const next = readTls(this.files.cert, this.files.key, this.files.clientCa);
      if (next.cert.equals(this.tls.cert) && next.key.equals(this.tls.key) && (next.clientCa?.equals(this.tls.clientCa ?? Buffer.alloc(0)) ?? !this.tls.clientCa)) return;
      this.tls = next;
      this.log.info({ cert: this.files.cert }, 'serving certificate reloaded');
      for (const listener of this.listeners) listener(next);
    } catch (error) {
      this.log.error({ err: (error as Error).message }, 'serving certificate files changed but are not usable; keeping the previous one');
    }
  }
}

/**
 * Local CA mode: the relay issues its own serving certificate for istiod's DNS name (so VMs need no
 * change) from the mesh CA, and reissues it at two thirds of its lifetime. Client certificates are
 * verified against the mesh root.
 */
export class IssuedServingCertificate implements ServingCertificate {
  private tls: TlsOptions;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<(tls: TlsOptions) => void>();

  constructor(
    private readonly signer: LocalSigner,
    private readonly rootPem: () => string,
    private readonly dnsNames: string[],
    private readonly lifetimeSeconds: number,
    private readonly log: Logger,
  ) {
    this.tls = this.issue();
  }

  current(): TlsOptions {
    return this.tls;
  }

  onChange(listener: (tls: TlsOptions) => void): void {
    this.listeners.add(listener);
  }

  /** Reissues now (also used when the CA files change). */
  rotate(): void {
    clearTimeout(this.timer);
    this.tls = this.issue();
    for (const listener of this.listeners) listener(this.tls);
  }

  close(): void {
    clearTimeout(this.timer);
  }

  private issue(): TlsOptions {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const { certificateChainPem, notAfter } = this.signer.issueServing(publicKey.export({ type: 'spki', format: 'der' }), this.dnsNames, this.lifetimeSeconds);
    const renewInMs = Math.max(1000, ((notAfter.getTime() - Date.now()) * 2) / 3);
    this.timer = setTimeout(() => this.rotate(), renewInMs);
    this.timer.unref();
    this.log.info({ dnsNames: this.dnsNames, notAfter: notAfter.toISOString() }, 'issued the relay\'s serving certificate');
    return {
      cert: Buffer.from(certificateChainPem),
      key: Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem' })),
      clientCa: Buffer.from(this.rootPem()),
    };
  }
}
