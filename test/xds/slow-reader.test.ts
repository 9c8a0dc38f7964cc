import http2 from 'node:http2';
import test from 'ava';
import { MessageDeframer, frameMessage } from '../../src/transport/grpc-framing.js';
import { AdsMethod, Envelopes } from '../../src/xds/protocol/envelopes.js';
import { TypeUrl } from '../../src/xds/protocol/type-urls.js';
import { eventually } from '../helpers/harness.js';
import { rig, vmNode } from '../helpers/setup.js';

const CDS = TypeUrl.cluster;

function bigSet(round: number): Record<string, string> {
  return Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`r${i}`, `${round}:`.padEnd(8192, 'x')]));
}

test('a VM that stops reading does not delay the others, and later gets the latest state, not a backlog', async (t) => {
  const r = await rig();
  t.teardown(r.close);
  r.upstream.set(CDS, bigSet(0));

  // The slow VM: a raw HTTP/2 stream that sends its request and then never reads.
  const session = http2.connect(`http://${r.relay.target}`);
  t.teardown(() => session.destroy());
  const slow = session.request({ ':method': 'POST', ':path': AdsMethod.delta, 'content-type': 'application/grpc', te: 'trailers' });
  slow.write(frameMessage(Envelopes.encodeDeltaRequest({ node: vmNode({ name: 'slow' }), type_url: CDS })));
  slow.pause();

  const fast = r.delta();
  fast.send({ node: vmNode({ name: 'fast' }), type_url: CDS });
  let response = await fast.next();
  fast.send({ type_url: CDS, response_nonce: response.nonce });

  const rounds = 20;
  for (let round = 1; round <= rounds; round++) {
    r.upstream.set(CDS, bigSet(round));
    response = await fast.next();
    fast.send({ type_url: CDS, response_nonce: response.nonce });
    t.is(response.resources.length, 20, `round ${round} reached the fast VM in full`);
  }

  // Now the slow VM reads: it receives far fewer responses than pushes, ending with the latest.
  const deframer = new MessageDeframer(64 * 1024 * 1024);
  const received: Array<ReturnType<typeof Envelopes.decodeDeltaResponse>> = [];
  slow.on('data', (chunk: Buffer) => {
    for (const message of deframer.push(chunk)) received.push(Envelopes.decodeDeltaResponse(message));
  });
  slow.resume();
  const latest = `${rounds}:`;
  await eventually(() => received.at(-1)?.resources.every((res) => Buffer.from(res.resource!.value).includes(latest)), (done) => done === true, 10_000);
  t.true(received.length < rounds / 2, `slow VM got ${received.length} responses for ${rounds + 1} pushes`);
});

/** The value of one sample of the relay's /metrics. */
async function metric(adminUrl: string, sample: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${sample} `));
  return Number(line?.split(' ')[1] ?? NaN);
}

test('streams that never read, each asking for a different large set, stay within the buffer budget: the largest are reset RESOURCE_EXHAUSTED, a healthy VM is served, and the memo gives back what nobody shares', async (t) => {
  const budgetMb = 4;
  const memoMb = 2;
  const r = await rig({ maxBufferedMb: budgetMb, responseMemoMb: memoMb });
  t.teardown(r.close);
  const EDS = TypeUrl.endpoint;
  const all = Array.from({ length: 40 }, (_, i) => `e${i}`);
  r.upstream.set(EDS, Object.fromEntries(all.map((name) => [name, name.padEnd(32 * 1024, 'x')])));

  // Each slow VM subscribes to all names but one, so no two responses are alike (~1.2 MiB each), and
  // shuts its flow-control window so nothing it is sent leaves the relay.
  const slowCount = 12;
  const session = http2.connect(`http://${r.relay.target}`, { settings: { initialWindowSize: 0 } });
  t.teardown(() => session.destroy());
  const outcomes = Array.from({ length: slowCount }, (_, index) => {
    const slow = session.request({ ':method': 'POST', ':path': AdsMethod.delta, 'content-type': 'application/grpc', te: 'trailers' });
    slow.write(frameMessage(Envelopes.encodeDeltaRequest({
      node: vmNode({ name: `slow-${index}` }), type_url: EDS, resource_names_subscribe: all.filter((_, i) => i !== index),
    })));
    slow.on('error', () => {});
    return new Promise<number>((resolve) => slow.on('close', () => resolve(slow.rstCode ?? 0)));
  });

  const healthy = r.delta();
  healthy.send({ node: vmNode({ name: 'healthy' }), type_url: EDS, resource_names_subscribe: ['e0', 'e1'] });
  const first = await healthy.next();
  t.is(first.resources.length, 2, 'a VM that reads is served while the slow ones hold the budget');
  healthy.send({ type_url: EDS, response_nonce: first.nonce });

  const budget = budgetMb * 1024 * 1024;
  await eventually(() => metric(r.relay.adminUrl, 'meshrelay_buffer_evictions_total'), (evicted) => evicted >= slowCount - Math.floor(budget / (1.2 * 1024 * 1024)), 10_000);
  t.true(await metric(r.relay.adminUrl, 'meshrelay_buffered_bytes{kind="queued"}') <= budget, 'queued bytes stay within the budget');
  const resetCodes = await Promise.all(outcomes.map((outcome) => Promise.race([outcome, new Promise<number>((resolve) => setTimeout(() => resolve(-1), 2000))])));
  const reset = resetCodes.filter((code) => code === http2.constants.NGHTTP2_ENHANCE_YOUR_CALM).length;
  t.true(reset >= slowCount - 4, `${reset} of ${slowCount} slow streams reset with ENHANCE_YOUR_CALM (gRPC: RESOURCE_EXHAUSTED)`);

  r.upstream.set(EDS, Object.fromEntries(all.map((name) => [name, `${name}-v2`.padEnd(32 * 1024, 'y')])));
  const update = await healthy.next();
  t.true(update.resources.every((resource) => Buffer.from(resource.resource!.value).includes('-v2')), 'the healthy VM gets the next push');
  session.destroy();
  t.true(await metric(r.relay.adminUrl, 'meshrelay_response_memo_bytes') <= memoMb * 1024 * 1024, 'the memo keeps no more than its limit');
  // What the ended streams held is garbage V8 frees only when it next collects: the relay asks.
  await eventually(() => metric(r.relay.adminUrl, 'meshrelay_memory_reclaims_total'), (reclaims) => reclaims >= 1, 10_000);
  t.pass();
});

for (const protocol of ['delta', 'sotw'] as const) {
  test(`[${protocol}] a VM that stops reading while different named resources change one at a time, and one is deleted, ends up holding every latest version once it reads`, async (t) => {
    const r = await rig();
    t.teardown(r.close);
    const EDS = TypeUrl.endpoint;
    const value = (name: string, round: number) => `${name}@${round}:`.padEnd(48 * 1024, 'x');
    const upstream: Record<string, string> = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`e${i}`, value(`e${i}`, 0)]));
    r.upstream.set(EDS, upstream);
    const names = Object.keys(upstream);

    const session = http2.connect(`http://${r.relay.target}`);
    t.teardown(() => session.destroy());
    const slow = session.request({ ':method': 'POST', ':path': AdsMethod[protocol], 'content-type': 'application/grpc', te: 'trailers' });
    const node = vmNode({ name: 'slow-named' });
    slow.write(frameMessage(protocol === 'delta'
      ? Envelopes.encodeDeltaRequest({ node, type_url: EDS, resource_names_subscribe: names })
      : Envelopes.encodeRequest({ node, type_url: EDS, resource_names: names })));
    slow.pause();
    // A VM that reads, to know when each change has gone through the relay.
    const fast = r.delta();
    fast.send({ node: vmNode({ name: 'fast-named' }), type_url: EDS, resource_names_subscribe: names });
    let response = await fast.next();
    fast.send({ type_url: EDS, response_nonce: response.nonce });

    // Each round changes one name (e0…e8 in turn); round 10 deletes e9 as well.
    for (let round = 1; round <= 18; round++) {
      const name = `e${(round - 1) % 9}`;
      upstream[name] = value(name, round);
      if (round === 10) delete upstream['e9'];
      r.upstream.set(EDS, { ...upstream });
      response = await fast.next();
      fast.send({ type_url: EDS, response_nonce: response.nonce });
    }

    // name → the round of the version held; the static upstream wraps each value in its resource.
    const held = new Map<string, number>();
    const hold = (body: Uint8Array) => {
      const [, name, round] = /(e\d)@(\d+):/.exec(Buffer.from(body).toString('latin1'))!;
      held.set(name!, Number(round));
    };
    const deframer = new MessageDeframer(64 * 1024 * 1024);
    slow.on('data', (chunk: Buffer) => {
      for (const message of deframer.push(chunk)) {
        if (protocol === 'delta') {
          const delta = Envelopes.decodeDeltaResponse(message);
          for (const resource of delta.resources) hold(resource.resource!.value);
          for (const name of delta.removed_resources) held.delete(name);
        } else {
          for (const any of Envelopes.decodeResponse(message).resources) hold(any.value);
        }
      }
    });
    slow.resume();
    const latest = () => Object.fromEntries(names.filter((name) => name in upstream).map((name) => [name, held.get(name)]));
    const wanted = Object.fromEntries(Object.entries(upstream).map(([name, text]) => [name, Number(/@(\d+):/.exec(text)![1])]));
    const got = await eventually(latest, (state) => JSON.stringify(state) === JSON.stringify(wanted), 10_000).catch(() => latest());
    t.deepEqual(got, wanted, 'the slow VM holds the latest of every name');
    // Delta says what was deleted; SotW EDS cannot (an absent assignment is not a removal).
    if (protocol === 'delta') t.false(held.has('e9'), 'the deleted name was removed');
  });
}
