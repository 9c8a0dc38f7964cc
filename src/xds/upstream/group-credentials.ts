import type { StreamIdentity } from '../view.js';

/** What a member can lend its group's upstream stream so istiod authenticates it (docs/SECURITY.md). */
export interface MemberCredential {
  /** `relay-token`: one the relay obtained for the group's service account (groupIdentity: token-request). */
  kind: 'token' | 'certificate' | 'relay-token';
  /** gRPC metadata for the upstream stream: `authorization` and `clusterid`, or `x-forwarded-client-cert`. */
  metadata: Record<string, string>;
  /** A bearer token's `exp`, in ms since the epoch, when it carries one. */
  expiresAt?: number;
}

/** The `exp` of a JWT, read but not verified: istiod verifies the token, the relay only avoids sending a dead one. */
function jwtExpiry(authorization: string): number | undefined {
  const token = /^Bearer\s+(\S+)$/i.exec(authorization)?.[1];
  const payload = token?.split('.')[1];
  if (!payload) return undefined;
  try {
    const exp = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { exp?: unknown }).exp;
    return typeof exp === 'number' ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The credentials a VM stream can lend: its bearer token as it sent it (istiod's KubeJWTAuthenticator
 * needs nothing configured), else, for a VM that proved itself with its workload certificate, the
 * relay's XFCC vouching for it (istiod needs TRUSTED_GATEWAY_CIDR for that). Most preferred first.
 */
export function memberCredentials(stream: StreamIdentity): MemberCredential[] {
  const out: MemberCredential[] = [];
  const authorization = stream.callMetadata.authorization;
  if (authorization) {
    const metadata: Record<string, string> = { authorization };
    if (stream.callMetadata.clusterid) metadata.clusterid = stream.callMetadata.clusterid;
    const expiresAt = jwtExpiry(authorization);
    out.push({ kind: 'token', metadata, ...(expiresAt !== undefined ? { expiresAt } : {}) });
  }
  const forwardedClientCert = stream.caller?.forwardedClientCert;
  if (forwardedClientCert) out.push({ kind: 'certificate', metadata: { 'x-forwarded-client-cert': forwardedClientCert } });
  return out;
}

const fingerprint = (credential: MemberCredential) => JSON.stringify(credential.metadata);
/** Where the relay's own token for the group is kept among the members' credentials. */
const RELAY = '@relay';

/**
 * The credentials of one group's members, for its upstream stream. istiod authenticates a stream
 * once, when it opens, and checks the identity against the node's NAMESPACE and SERVICE_ACCOUNT,
 * which every member shares (both are in the aggregation key): any current member's credential
 * speaks for the group, and only this group's members' credentials are ever used for it.
 */
export class GroupCredentials {
  private readonly byMember = new Map<string, MemberCredential[]>();
  /** Credentials istiod refused: never offered again. */
  private readonly refused = new Set<string>();
  private inUse: MemberCredential | undefined;
  /** A token the relay asked for is on its way: the stream waits for it rather than open bare. */
  private relayTokenPending = false;

  add(streamId: string, credentials: MemberCredential[]): void {
    if (credentials.length > 0) this.byMember.set(streamId, credentials);
  }

  remove(streamId: string): void {
    this.byMember.delete(streamId);
  }

  /** True when some member lends a credential at all (a group without any opens streams bare, e.g. toward 15010). */
  get any(): boolean {
    return this.byMember.size > 0 || this.refused.size > 0 || this.relayTokenPending;
  }

  /** The relay has asked for a token of the group's service account. */
  expectRelayToken(): void {
    this.relayTokenPending = true;
  }

  /** The token the relay obtained for the group (replacing an earlier one); undefined: none came. */
  setRelayToken(credential: MemberCredential | undefined): void {
    this.relayTokenPending = false;
    if (credential) this.byMember.set(RELAY, [credential]);
  }

  /** True when this member lends a credential istiod has not refused yet and that has not expired. */
  offersUsable(streamId: string, now = Date.now()): boolean {
    return (this.byMember.get(streamId) ?? []).some((credential) => this.usable(credential, now));
  }

  /**
   * A credential to open the next upstream stream with: a member's token (istiod needs nothing
   * configured for it), then one the relay obtained for the group, then a member's certificate
   * (XFCC, which istiod takes only from a trusted gateway); the longest-standing member first.
   */
  pick(now = Date.now()): MemberCredential | undefined {
    const all = [...this.byMember.values()].flat();
    for (const kind of ['token', 'relay-token', 'certificate'] as const) {
      // The relay's token is on its way: better than a certificate istiod may not take from us.
      if (kind === 'certificate' && this.relayTokenPending) break;
      const credential = all.find((candidate) => candidate.kind === kind && this.usable(candidate, now));
      if (credential) {
        this.inUse = credential;
        return credential;
      }
    }
    this.inUse = undefined;
    return undefined;
  }

  /** istiod refused the stream opened with the credential in use: it is not offered again. */
  refuseInUse(): void {
    if (this.inUse) this.refused.add(fingerprint(this.inUse));
    this.inUse = undefined;
  }

  /** What /debug/groups shows: kinds, never the secrets. */
  summary(): { members: number; inUse: MemberCredential['kind'] | 'none'; refused: number; relayToken: boolean } {
    return { members: this.byMember.size - (this.byMember.has(RELAY) ? 1 : 0), inUse: this.inUse?.kind ?? 'none', refused: this.refused.size, relayToken: this.byMember.has(RELAY) };
  }

  private usable(credential: MemberCredential, now: number): boolean {
    // A minute of margin: the token must still be valid when istiod reads it.
    if (credential.expiresAt !== undefined && credential.expiresAt <= now + 60_000) return false;
    return !this.refused.has(fingerprint(credential));
  }
}
