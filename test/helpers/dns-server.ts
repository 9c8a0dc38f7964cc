import dgram from 'node:dgram';

/**
 * A tiny authoritative DNS server on loopback UDP for tests: answers A queries from a table the
 * test can change, and AAAA queries with no records. Node's own resolver talks to it.
 */
export async function startDnsServer(records: Map<string, { addresses: string[]; ttl: number }>) {
  const socket = dgram.createSocket('udp4');
  let queries = 0;
  socket.on('message', (query, remote) => {
    queries++;
    let offset = 12;
    const labels: string[] = [];
    while (query[offset]! > 0) {
      labels.push(query.subarray(offset + 1, offset + 1 + query[offset]!).toString());
      offset += 1 + query[offset]!;
    }
    const questionEnd = offset + 5;
    const type = query.readUInt16BE(offset + 1);
    const entry = records.get(labels.join('.'));
    const answers = type === 1 && entry ? entry.addresses : [];
    const header = Buffer.alloc(12);
    query.copy(header, 0, 0, 2);
    header.writeUInt16BE(entry ? 0x8180 : 0x8183, 2);
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    const answerRecords = answers.map((address) => {
      const record = Buffer.alloc(16);
      record.writeUInt16BE(0xc00c, 0);
      record.writeUInt16BE(1, 2);
      record.writeUInt16BE(1, 4);
      record.writeUInt32BE(entry!.ttl, 6);
      record.writeUInt16BE(4, 10);
      address.split('.').forEach((octet, i) => { record[12 + i] = Number(octet); });
      return record;
    });
    socket.send(Buffer.concat([header, query.subarray(12, questionEnd), ...answerRecords]), remote.port, remote.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  let open = true;
  const close = () => new Promise<void>((resolve) => {
    if (!open) return resolve();
    open = false;
    socket.close(() => resolve());
  });
  return { server: `127.0.0.1:${socket.address().port}`, queries: () => queries, close };
}
