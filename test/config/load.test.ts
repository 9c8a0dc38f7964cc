import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { loadConfig } from '../../src/config/load.js';
import { resolveCaMode, serveSchema } from '../../src/config/schema.js';
import { RelayError } from '../../src/errors.js';

function configFile(text: string): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'meshrelay-config-')), 'relay.yaml');
  writeFileSync(file, text);
  return file;
}

test('defaults: embedded upstream, Delta, group mode, loopback listeners', (t) => {
  const config = loadConfig(serveSchema, [], {});
  t.is(config.upstream, 'embedded');
  t.is(config.upstreamProtocol, 'delta');
  t.is(config.mode, 'group');
  t.is(config.xdsListen, '127.0.0.1:15010');
  t.is(config.adminListen, '127.0.0.1:15014');
  t.is(config.tlsListen, '');
});

test('precedence: flags over MESHRELAY_* env over the config file over defaults', (t) => {
  const file = configFile('mode: stream\nupstreamConnections: 3\nmaxNamesPerRequest: 10\nupstream: istiod.istio-system.svc:15010\n');
  const env = { MESHRELAY_CONFIG: file, MESHRELAY_UPSTREAM_CONNECTIONS: '5', MESHRELAY_MAX_NAMES_PER_REQUEST: '20' };
  const config = loadConfig(serveSchema, ['--max-names-per-request', '30'], env);
  t.is(config.mode, 'stream', 'from the file');
  t.is(config.upstreamConnections, 5, 'env beats file');
  t.is(config.maxNamesPerRequest, 30, 'flag beats env');
  t.is(config.upstream, 'istiod.istio-system.svc:15010');
});

test('lists and maps from flags: comma lists and key=value pairs', (t) => {
  const config = loadConfig(serveSchema, ['--per-instance-labels', 'host,rack', '--mode-by-namespace=legacy=stream,edge=group'], {});
  t.deepEqual(config.perInstanceLabels, ['host', 'rack']);
  t.deepEqual(config.modeByNamespace, { legacy: 'stream', edge: 'group' });
});

const bad: Array<[string, string[], NodeJS.ProcessEnv, RegExp]> = [
  ['unknown flag', ['--no-such-flag', 'x'], {}, /unknown flag --no-such-flag/],
  ['unknown env var', [], { MESHRELAY_NOPE: '1' }, /unknown environment MESHRELAY_NOPE/],
  ['bad enum', ['--mode', 'sideways'], {}, /invalid mode/],
  ['bad number', ['--upstream-connections', 'many'], {}, /upstreamConnections: "many" is not a number/],
  ['bad address', ['--xds-listen', 'localhost'], {}, /invalid xdsListen/],
  ['TLS without files when the relay does not sign', ['--upstream', 'istiod:15012', '--tls-listen', ':15012'], {}, /tlsListen.*needs tlsCertFile/],
  ['forward CA mode with nothing to forward to', ['--ca-mode', 'forward'], {}, /caMode.*forward needs an istiod/],
  ['forward CA mode toward istiod over plaintext', ['--upstream', '127.0.0.1:15010', '--ca-mode', 'forward'], {}, /caUpstreamCaFile.*serves TLS only/],
  ['missing config file', ['--config', '/nonexistent/relay.yaml'], {}, /cannot read config file/],
  ['flag without value', ['--mode'], {}, /--mode needs a value/],
];

for (const [name, argv, env, message] of bad) {
  test(`a clear error naming the key: ${name}`, (t) => {
    const error = t.throws(() => loadConfig(serveSchema, argv, env), { instanceOf: RelayError });
    t.regex(error!.message, message);
    t.is(error!.code, 'MR_BAD_CONFIG');
  });
}

test('CA mode auto: local signing in front of the embedded simulator, forwarding to a real istiod whose CA can be reached over TLS', (t) => {
  t.is(resolveCaMode(loadConfig(serveSchema, [], {})), 'local');
  t.is(resolveCaMode(loadConfig(serveSchema, ['--upstream', 'istiod.istio-system.svc:15012', '--upstream-ca-file', '/etc/istio/root.pem'], {})), 'forward');
  t.is(resolveCaMode(loadConfig(serveSchema, ['--upstream', '127.0.0.1:15010', '--ca-upstream', '127.0.0.1:15012', '--ca-upstream-ca-file', '/etc/istio/root.pem'], {})), 'forward');
  t.is(resolveCaMode(loadConfig(serveSchema, ['--upstream', '127.0.0.1:15010'], {})), 'off', 'no root to verify istiod\'s CA with: no CA rather than tokens over plaintext');
  t.notThrows(() => loadConfig(serveSchema, ['--tls-listen', ':15012'], {}), 'local mode issues its own serving certificate');
});

test('a broken config file is reported with its name', (t) => {
  const file = configFile('mode: [unclosed\n');
  const error = t.throws(() => loadConfig(serveSchema, ['--config', file], {}), { instanceOf: RelayError });
  t.regex(error!.message, /not valid YAML/);
  const wrongKey = configFile('moode: group\n');
  const error2 = t.throws(() => loadConfig(serveSchema, ['--config', wrongKey], {}), { instanceOf: RelayError });
  t.regex(error2!.message, /moode/);
});
