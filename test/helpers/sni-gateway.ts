import net from 'node:net';
import type { AddressInfo } from 'node:net';

/** Reads the SNI from a TLS ClientHello, or undefined when the bytes are not (yet) one. */
export function clientHelloSni(data: Buffer): string | undefined {
  if (data.length < 5 || data[0] !== 0x16) return undefined;
  let offset = 5;
  if (data[offset] !== 0x01) return undefined;
  offset += 4 + 2 + 32;
  const skip = (lengthBytes: number) => {
    const length = lengthBytes === 1 ? data[offset]! : data.readUInt16BE(offset);
    offset += lengthBytes + length;
  };
  skip(1); // session id
  skip(2); // cipher suites
  skip(1); // compression methods
  const extensionsEnd = offset + 2 + data.readUInt16BE(offset);
  offset += 2;
  while (offset + 4 <= extensionsEnd && offset + 4 <= data.length) {
    const type = data.readUInt16BE(offset);
    const length = data.readUInt16BE(offset + 2);
    if (type === 0) {
      const nameLength = data.readUInt16BE(offset + 7);
      return data.subarray(offset + 9, offset + 9 + nameLength).toString('utf8');
    }
    offset += 4 + length;
  }
  return undefined;
}

/**
 * A stand-in for the east-west gateway's AUTO_PASSTHROUGH listener on 15443: it does not terminate
 * TLS; it reads the SNI of the ClientHello and forwards the raw bytes to the backend that SNI names.
 */
export async function startSniGateway(host: string, routes: Map<string, number>) {
  const seen: string[] = [];
  const server = net.createServer((client) => {
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const sni = clientHelloSni(buffered);
      if (sni === undefined && buffered.length < 16_384) return;
      client.off('data', onData);
      const port = sni ? routes.get(sni) : undefined;
      seen.push(sni ?? '(none)');
      if (!port) {
        client.destroy();
        return;
      }
      const backend = net.connect(port, '127.0.0.1', () => {
        backend.write(buffered);
        client.pipe(backend).pipe(client);
      });
      backend.on('error', () => client.destroy());
      client.on('error', () => backend.destroy());
    };
    client.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return { port: (server.address() as AddressInfo).port, seen, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
