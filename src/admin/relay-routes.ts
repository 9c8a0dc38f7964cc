import { LOG_LEVELS, setLogLevel } from '../log.js';
import type { RelayAdminView } from './admin-view.js';
import { shortTypeName } from '../xds/protocol/type-urls.js';
import type { AdminServer } from './admin-server.js';
import { decodeForDump } from './config-dump.js';
import { renderStatusPage, statusData } from './status-page.js';

/** The relay's admin port: health, readiness, metrics, istiod-style debug views, log level. */
export function registerRelayRoutes(admin: AdminServer, relay: RelayAdminView): void {
  admin.route('/', () => ({ status: 200, body: renderStatusPage(statusData(relay)), contentType: 'text/html; charset=utf-8' }));
  admin.route('/healthz', () => ({ status: 200, body: { status: 'ok', pid: process.pid } }));
  admin.route('/metrics', async () => ({ status: 200, body: await relay.metrics.metrics(), contentType: relay.metrics.contentType }));
  admin.route('/readyz', () => {
    const { ready, detail } = relay.readiness();
    return { status: ready ? 200 : 503, body: { ready, ...detail } };
  });
  admin.route('/debug/syncz', (url) => {
    const proxy = url.searchParams.get('proxy');
    const all = relay.ads.syncStatus();
    return { status: 200, body: proxy ? all.filter((entry) => entry.proxy === proxy) : all };
  });
  admin.route('/debug/networks', () => ({ status: 200, body: relay.topology.describe() }));
  admin.route('/debug/config_dump', (url) => {
    const proxy = url.searchParams.get('proxy');
    if (!proxy) return { status: 400, body: { error: 'name the proxy: /debug/config_dump?proxy=<node id>' } };
    const dump = relay.ads.configDump(proxy, decodeForDump);
    return dump.length > 0 ? { status: 200, body: dump } : { status: 404, body: { error: `no connected proxy ${proxy}` } };
  });
  admin.route('/logging', () => ({ status: 200, body: { level: relay.log.level } }));
  admin.putRoute('/logging', (url) => {
    const level = url.searchParams.get('level') ?? '';
    if (!LOG_LEVELS.includes(level as never)) return { status: 400, body: { error: `level must be one of ${LOG_LEVELS.join(', ')}` } };
    setLogLevel(relay.log, level as (typeof LOG_LEVELS)[number]);
    relay.log.info({ level }, 'log level changed');
    return { status: 200, body: { level } };
  });
  admin.route('/debug/groups', () => ({
    status: 200,
    body: relay.groups.list().map((group) => ({
      key: group.key,
      mode: group.mode,
      phase: group.phase,
      members: group.members.size,
      createdAt: group.createdAt,
      fields: group.fields,
      upstream: group.upstream.stats,
      ...(group.mode === 'group' ? { credentials: group.credentials.summary() } : {}),
      // Why the group is apart from others with the same metadata: what is bound to its VMs' addresses.
      ...(group.fields['@address'] ? { addressBinding: { policy: relay.addressKeying.policy, bindings: relay.addressKeying.watch?.describe(String(group.fields['@address'])) ?? [] } } : {}),
      subscriptions: Object.fromEntries(Object.entries(group.subscriptionSummary()).map(([typeUrl, s]) => [shortTypeName(typeUrl), s])),
      cachedResources: group.cache.size(),
      ...(group.networkViews.size > 0 ? { edsTranslationsByNetwork: Object.fromEntries([...group.networkViews].map(([network, view]) => [network || '(none)', view.translations])) } : {}),
      fanout: { serializations: group.memo.misses, reuses: group.memo.hits },
    })),
  }));
}
