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
