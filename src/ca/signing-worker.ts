import { parentPort } from 'node:worker_threads';
import { RelayError } from '../errors.js';
import { parseCaBundle } from './ca-bundle.js';
import { LocalSigner } from './local-signer.js';
import type { SigningReply, SigningRequest } from './signing-pool.js';

/**
 * A signing thread: parses and verifies CSRs and signs them with its own copy of the CA, so a storm
 * of CSRs (or expensive ones) never stalls the event loop that serves xDS.
 */
let signer: LocalSigner | undefined;

parentPort!.on('message', (message: SigningRequest) => {
  if (message.kind === 'ca') {
    signer = new LocalSigner({ bundle: parseCaBundle(message.pems, 'the signing thread') }, message.ttl);
    return;
  }
  let reply: SigningReply;
  try {
    if (!signer) throw new Error('no CA given to the signing thread');
    reply = { id: message.id, chain: signer.sign(message.csrPem, message.identity, message.seconds) };
  } catch (error) {
    const relayError = RelayError.from(error);
    reply = { id: message.id, error: { code: relayError.code, message: relayError.message } };
  }
  parentPort!.postMessage(reply);
});
