import path from 'node:path';
import { caUpstreamRoot, resolveCaMode, type ServeConfig } from '../config/schema.js';
import { RelayError } from '../errors.js';
import type { Logger } from '../log.js';
import type { BackoffPolicy } from '../transport/backoff.js';
import { CaBundleWatcher, CaFiles } from './ca-bundle.js';
import { CaForwarder } from './ca-forwarder.js';
import { CaStats } from './ca-stats.js';
import type { CaService } from './ca-service.js';
import { ensureDevCa } from './dev-ca.js';
import { cpuLimit } from '../limits/cpu-limit.js';
import { DEV_ISSUER, ensureDevTokenIssuer } from './dev-token-issuer.js';
import { CA_AUDIENCE } from './identity.js';
import { JwtVerifier } from './jwt.js';
import type { TokenVerifier } from './authenticator.js';
import { LocalSigner } from './local-signer.js';
import { SigningPool } from './signing-pool.js';
import { IssuedServingCertificate, type ServingCertificate } from './serving-certificate.js';
import { upstreamChannelOptions, upstreamCredentials, watchUpstreamCredentials } from '../config/upstream-tls.js';

export interface CaSubsystem {
  service: CaService;
  stats: CaStats;
  /** Local mode: when the root and the signing certificate expire. */
  expiries?: () => { root: Date; chain: Date };
  /** The relay's own serving certificate, when local mode issues it (no tlsCertFile given). */
  serving: ServingCertificate | undefined;
  /** Verifies bearer tokens (TokenReview or the JWKS file), when one is configured. */
  tokens: TokenVerifier | undefined;
  /** For people: where the root is, how tokens are checked. */
  summary: { mode: 'local' | 'forward'; rootCertFile?: string; caDir?: string; tokenIssuer?: string; upstream?: string };
  close(): void;
}

const SERVING_CERT_LIFETIME_SECONDS = 24 * 3600;

/**
 * Local mode's files: `caDir`, or with none the dev CA and dev token issuer under `stateDir`, created
 * when absent. A coordinator calls it before forking workers, so they all sign with one CA.
 */
export function localCaFiles(config: ServeConfig, log: Logger, tokenReview: boolean): { caDir: string; jwksFile: string; issuers: string[] } {
  const devMode = !config.caDir;
  const caDir = config.caDir || path.join(config.stateDir, 'ca');
  if (devMode && ensureDevCa(caDir)) log.info({ caDir }, 'created a development CA');
  let jwksFile = config.jwksFile;
  let issuers = config.jwtIssuers;
  if (devMode && !jwksFile && !tokenReview) {
    jwksFile = ensureDevTokenIssuer(path.join(config.stateDir, 'token-issuer')).jwksFile;
    issuers = issuers.length > 0 ? issuers : [DEV_ISSUER];
  }
  return { caDir, jwksFile, issuers };
}

/**
 * Builds the CA side from config. Local mode signs with plugged CA files (`caDir`), or — with no
 * `caDir`, for trying the relay out — with a dev CA and dev token issuer created under `stateDir`.
 * Forward mode sends CSRs to istiod.
 */
export function setUpCa(config: ServeConfig, backoff: BackoffPolicy, log: Logger, tokenReview?: TokenVerifier): CaSubsystem | undefined {
  const mode = resolveCaMode(config);
  if (mode === 'off') return undefined;
  const stats = new CaStats();
  if (mode === 'forward') {
    const tokens = tokenReview ?? (config.jwksFile
      ? new JwtVerifier({ jwksFile: config.jwksFile, issuers: config.jwtIssuers, audience: CA_AUDIENCE, trustDomain: config.trustDomain })
      : undefined);
    return { ...setUpForward(config, stats, backoff, log), tokens };
  }

  const { caDir, jwksFile, issuers } = localCaFiles(config, log, tokenReview !== undefined);
  if (jwksFile && issuers.length === 0) {
    throw new RelayError('MR_BAD_CONFIG', 'invalid jwtIssuers: jwksFile is set, so name the token issuers to trust');
  }
  if (!jwksFile && !tokenReview) log.warn('no jwksFile and no tokenReview: the local CA accepts only client certificates (renewals)');
  // TokenReview when configured (the API server decides), else offline against the issuer keys.
  const tokens: TokenVerifier | undefined = tokenReview
    ?? (jwksFile ? new JwtVerifier({ jwksFile, issuers, audience: CA_AUDIENCE, trustDomain: config.trustDomain }) : undefined);
  const watcher = new CaBundleWatcher(caDir, log);
  watcher.start();
  const ttl = { defaultSeconds: config.workloadCertTtlSeconds, maxSeconds: config.maxWorkloadCertTtlSeconds };
  const signer = new LocalSigner(watcher, ttl);
  const signing = new SigningPool(watcher, ttl, config.caSigningThreads ?? defaultSigningThreads(), config.caMaxQueued, log);
  let serving: IssuedServingCertificate | undefined;
  if (config.tlsListen && !config.tlsCertFile) {
    const issued = new IssuedServingCertificate(signer, () => watcher.bundle.rootPem, config.servingDnsNames, SERVING_CERT_LIFETIME_SECONDS, log);
    watcher.onReload(() => issued.rotate());
    serving = issued;
  }
  return {
    service: { mode: 'local', signing, authentication: { trustDomain: config.trustDomain, ...(tokens ? { tokens } : {}) } },
    stats,
    expiries: () => signer.expiries(),
    tokens,
    serving,
    summary: { mode, caDir, rootCertFile: path.resolve(caDir, CaFiles.root), ...(tokenReview ? { tokenIssuer: 'TokenReview' } : jwksFile ? { tokenIssuer: issuers.join(',') } : {}) },
    close: () => {
      watcher.close();
      serving?.close();
      void signing.close();
    },
  };
}

function setUpForward(config: ServeConfig, stats: CaStats, backoff: BackoffPolicy, log: Logger): Omit<CaSubsystem, 'tokens'> {
  const target = config.caUpstream || config.upstream;
  const forwarder = new CaForwarder({
    target, backoff, log,
    credentials: upstreamCredentials(config, 'ca'),
    channelOptions: upstreamChannelOptions(config, 'ca'),
    maxConcurrent: config.caMaxConcurrent,
    maxQueued: config.caMaxQueued,
    timeoutMs: config.caRequestTimeoutSeconds * 1000,
  });
  const rootWatch = watchUpstreamCredentials(config, 'ca', log, (credentials) => forwarder.replaceCredentials(credentials));
  return {
    service: { mode: 'forward', forwarder, authentication: { trustDomain: config.trustDomain } },
    stats,
    serving: undefined,
    // The mesh root istiod's CA is verified with is also what VMs' client certificates chain to.
    summary: { mode: 'forward', upstream: target, ...(caUpstreamRoot(config) ? { rootCertFile: path.resolve(caUpstreamRoot(config)) } : {}) },
    close: () => {
      rootWatch.close();
      forwarder.close();
    },
  };
}

/** One signing thread per core but one (the event loop's), at least one, at most four. */
function defaultSigningThreads(): number {
  return Math.min(4, Math.max(1, cpuLimit() - 1));
}
