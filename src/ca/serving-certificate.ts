import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { watchFiles } from '../config/file-watch.js';
import { readConfiguredFile } from '../config/files.js';
import type { Logger } from '../log.js';
import type { TlsOptions } from '../transport/grpc-server.js';
import type { LocalSigner } from './local-signer.js';

/** The TLS material of the relay's 15012 listener, and a way to hear when it changes. */
export abstract class ServingCertificate {
  private readonly listeners = new Set<(tls: TlsOptions) => void>();

  constructor(protected tls: TlsOptions) {}

  current(): TlsOptions {
    return this.tls;
  }

  onChange(listener: (tls: TlsOptions) => void): void {
    this.listeners.add(listener);
  }

  abstract close(): void;

  protected publish(tls: TlsOptions): void {
    this.tls = tls;
    for (const listener of this.listeners) listener(tls);
  }
}

function readTls(certFile: string, keyFile: string, clientCaFile: string): TlsOptions {
  return {
    cert: readConfiguredFile(certFile, 'tlsCertFile'),
    key: readConfiguredFile(keyFile, 'tlsKeyFile'),
    ...(clientCaFile ? { clientCa: readConfiguredFile(clientCaFile, 'tlsClientCaFile') } : {}),
  };
}

/** Certificate files (forward mode, or any operator-provided certificate), reloaded when they change. */
export class FileServingCertificate extends ServingCertificate {
  private readonly watch: { close(): void };

  constructor(private readonly files: { cert: string; key: string; clientCa: string }, private readonly log: Logger) {
    super(readTls(files.cert, files.key, files.clientCa));
    this.watch = watchFiles([files.cert, files.key, files.clientCa], () => this.reload());
  }

  close(): void {
    this.watch.close();
  }

  private reload(): void {
    try {
      const next = readTls(this.files.cert, this.files.key, this.files.clientCa);
      if (next.cert.equals(this.tls.cert) && next.key.equals(this.tls.key) && (next.clientCa?.equals(this.tls.clientCa ?? Buffer.alloc(0)) ?? !this.tls.clientCa)) return;
      this.log.info({ cert: this.files.cert }, 'serving certificate reloaded');
      this.publish(next);
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
export class IssuedServingCertificate extends ServingCertificate {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly signer: LocalSigner,
    private readonly rootPem: () => string,
    private readonly dnsNames: string[],
    private readonly lifetimeSeconds: number,
    private readonly log: Logger,
  ) {
    super(issueServing(signer, rootPem, dnsNames, lifetimeSeconds, log));
    this.scheduleRenewal();
  }

  /** Reissues now (also used when the CA files change). */
  rotate(): void {
    this.publish(issueServing(this.signer, this.rootPem, this.dnsNames, this.lifetimeSeconds, this.log));
    this.scheduleRenewal();
  }

  close(): void {
    clearTimeout(this.timer);
  }

  /** At two thirds of the certificate's lifetime, as istio-agent renews. */
  private scheduleRenewal(): void {
    clearTimeout(this.timer);
    const notAfter = new Date(new X509Certificate(this.tls.cert).validTo);
    this.timer = setTimeout(() => this.rotate(), Math.max(1000, ((notAfter.getTime() - Date.now()) * 2) / 3));
    this.timer.unref();
  }
}

function issueServing(signer: LocalSigner, rootPem: () => string, dnsNames: string[], lifetimeSeconds: number, log: Logger): TlsOptions {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const { certificateChainPem, notAfter } = signer.issueServing(publicKey.export({ type: 'spki', format: 'der' }), dnsNames, lifetimeSeconds);
  log.info({ dnsNames, notAfter: notAfter.toISOString() }, 'issued the relay\'s serving certificate');
  return {
    cert: Buffer.from(certificateChainPem),
    key: Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem' })),
    clientCa: Buffer.from(rootPem()),
  };
}
