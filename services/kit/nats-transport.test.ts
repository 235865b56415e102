import { connect } from '@nats-io/transport-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestNats, type TestNats } from '../testing/index.ts';
import { connectNats, type Nats } from './nats.ts';

let server: TestNats;
let n: Nats;
beforeAll(async () => {
  server = await startTestNats();
  n = await connectNats(server.url, pino({ level: 'silent' }));
});
afterAll(async () => { await n?.nc.close(); await server?.stop(); });

// The socket under the connection (nats.js keeps it on its protocol's transport).
const socketOf = (nc: unknown) => (nc as { protocol: { transport: { socket: { write: (...a: unknown[]) => boolean } } } }).protocol.transport.socket;

describe('the coalescing NATS transport', () => {
  it('sends what one turn of the event loop sent, across microtask bursts, in one socket write, in order', async () => {
    const peer = await connect({ servers: server.url });
    const sub = peer.subscribe('coalesce.>');
    await peer.flush();
    const socket = socketOf(n.nc);
    const write = socket.write;
    let writes = 0;
    socket.write = (...a: unknown[]) => { writes++; return write.apply(socket, a); };
    try {
      // Ten publishes, each after its own await: nats.js alone writes at the end of each burst.
      await new Promise<void>((resolve) => setImmediate(async () => {
        for (let i = 0; i < 10; i++) {
          n.nc.publish(`coalesce.${i}`, String(i));
          await Promise.resolve();
          await Promise.resolve();
        }
        resolve();
      }));
      await n.nc.flush();
    } finally {
      socket.write = write;
    }
    // The ten publishes and the flush's PING, all sent in that turn, in one write (nats.js
    // alone: eleven, one per microtask burst).
    expect(writes).toBe(1);
    const got: string[] = [];
    for await (const m of sub) { got.push(m.string()); if (got.length === 10) break; }
    expect(got).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    await peer.close();
  });

  it('sends what it holds before the connection closes', async () => {
    const peer = await connect({ servers: server.url });
    const sub = peer.subscribe('closing');
    await peer.flush();
    const own = await connectNats(server.url, pino({ level: 'silent' }));
    own.nc.publish('closing', 'last words');
    await own.nc.close();
    for await (const m of sub) { expect(m.string()).toBe('last words'); break; }
    await peer.close();
  });
});
