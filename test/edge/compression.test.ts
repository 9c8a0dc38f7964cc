import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { vmNode } from '../helpers/ads-client.js';
import { startEdgeSite, toxiproxyUnavailable } from '../helpers/edge-link.js';
import { compareConfigs, ConfigProxy, type ProxyConfig } from '../helpers/proxy-config.js';

const unavailable = toxiproxyUnavailable();
const edgeTest = unavailable ? test.skip : test.serial;
if (unavailable) test('edge compression tests (toxiproxy)', (t) => t.log(`skipped: ${unavailable}`));

/** One VM's first full sync through an edge relay; the TCP bytes the link carried toward the edge, counted once its connections closed. */
async function syncOverLink(compressResponses: 'off' | 'all'): Promise<{ bytes: number; config: ProxyConfig }> {
  const site = await startEdgeSite({}, { compressResponses });
  try {
    const proxy = new ConfigProxy(site.edge.target, 'delta', vmNode({ labels: { app: 'shop' } }));
    const config = await proxy.settled(500, 15_000);
    proxy.close();
    await site.edge.stop();
    await sleep(300);
    return { bytes: (await site.toxiproxy.closedConnectionBytes(site.link)).toClient, config };
  } finally {
    await site.close();
  }
}

edgeTest('responses to an edge relay go gzip-compressed when the central relay is told to, and the edge holds exactly the same config', async (t) => {
  const plain = await syncOverLink('off');
  const gzip = await syncOverLink('all');
  t.log(`TCP bytes toward the edge for one group's first sync: ${plain.bytes} plain, ${gzip.bytes} with gzip (${(gzip.bytes / plain.bytes * 100).toFixed(0)} %)`);
  t.true(plain.config.get(TypeUrl.cluster)!.size > 0);
  t.deepEqual(compareConfigs(plain.config, gzip.config), [], 'the same resources, byte for byte, once decompressed');
  t.true(gzip.bytes < plain.bytes * 0.7, `gzip should save at least 30 % of the link's bytes (${gzip.bytes} vs ${plain.bytes})`);
});
