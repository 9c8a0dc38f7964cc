import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import { callWho } from './echo-backend.js';

/**
 * A proxyless gRPC application in its own process: resolves `xds:///<target>` with the bootstrap
 * given as its second argument, calls Who until it answers (or the deadline passes), prints the answer
 * and exits. Its own process because grpc-js-xds keeps its xDS client (and load-reporting timers)
 * for the life of the process.
 */
grpcXds.register();
const [target, bootstrap, deadlineMs = '30000'] = process.argv.slice(2);
const client = new grpc.Client(`xds:///${target}`, grpc.credentials.createInsecure(), {
  'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config': bootstrap,
});
const deadline = Date.now() + Number(deadlineMs);
let last = '';
while (Date.now() < deadline) {
  try {
    process.stdout.write(`${await callWho(client, 5000)}\n`);
    process.exit(0);
  } catch (error) {
    last = (error as Error).message;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
process.stderr.write(`no answer from ${target}: ${last}\n`);
process.exit(1);
