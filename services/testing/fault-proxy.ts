// A TCP proxy that misbehaves on command, for the chaos suite (services/testing/chaos.ts)
// and any test that wants a network fault between two real processes: placed in front of
// Postgres, NATS, a simulator or a service, it passes bytes through until told to
//  - `latency`: hold every chunk, both ways, `latencyMs` before passing it on (order kept);
//  - `reset`: answer with a TCP RST, on every open connection at once and on each new one;
//  - `blackhole`: accept, read and drop every byte, both ways, and never answer: a partition
//    that neither side can tell from a slow peer until its own timeout fires.
// Healing (`set({ kind: 'none' })`) resets the connections the hole swallowed: their streams
// lost bytes, so nothing sensible can pass on them again, and an RST is what a peer ends up
// seeing once its retransmissions to a partitioned host give up. New connections pass again.
import { connect, createServer, type Socket } from 'node:net';

export type ProxyFault = { kind: 'none' } | { kind: 'latency'; latencyMs: number } | { kind: 'reset' } | { kind: 'blackhole' };

export type FaultProxy = {
  name: string;
  port: number;
  /** `postgres://postgres@127.0.0.1:<port>/orderflow` from `postgres://postgres@127.0.0.1:5432/orderflow`: the target's URL with the proxy's port. */
  url(targetUrl: string): string;
  set(fault: ProxyFault): void;
  fault(): ProxyFault;
  stats(): { connections: number; open: number; resets: number; droppedBytes: number };
  close(): Promise<void>;
};

type Pair = { client: Socket; upstream?: Socket; swallowed: boolean };

/** `const p = await startFaultProxy({ name: 'postgres', targetPort: 5432 })`; then connect to p.port. */
export async function startFaultProxy(o: { name: string; targetPort: number; targetHost?: string; port?: number }): Promise<FaultProxy> {
  let fault: ProxyFault = { kind: 'none' };
  const pairs = new Set<Pair>();
  const stats = { connections: 0, resets: 0, droppedBytes: 0 };

  const reset = (p: Pair) => {
    stats.resets++;
    pairs.delete(p);
    if (!p.client.destroyed) p.client.resetAndDestroy();
    if (p.upstream && !p.upstream.destroyed) p.upstream.resetAndDestroy();
  };
  // One direction of a pair: what the fault says to do with each chunk, decided when it arrives.
  const forward = (p: Pair, from: Socket, to: () => Socket | undefined) => {
    from.on('data', (chunk: Buffer) => {
      if (p.swallowed || fault.kind === 'blackhole') { p.swallowed = true; stats.droppedBytes += chunk.length; return; }
      const send = () => { const t = to(); if (t && !t.destroyed && !p.swallowed) t.write(chunk); };
      if (fault.kind === 'latency') {
        // Same delay for every chunk, and Node runs equal timeouts in the order they were set: order is kept.
        setTimeout(send, fault.latencyMs);
      } else send();
    });
  };

  const server = createServer((client) => {
    stats.connections++;
    const p: Pair = { client, swallowed: fault.kind === 'blackhole' };
    pairs.add(p);
    client.on('error', () => {});
    client.on('close', () => { pairs.delete(p); if (p.upstream && !p.upstream.destroyed) p.upstream.destroy(); });
    if (fault.kind === 'reset') { reset(p); return; }
    // The upstream connection is made even in a black hole (the target sees a silent client);
    // bytes from the client that arrive before it connects are queued by the socket.
    const upstream = connect(o.targetPort, o.targetHost ?? '127.0.0.1');
    p.upstream = upstream;
    upstream.on('error', () => { if (!client.destroyed) client.resetAndDestroy(); });
    upstream.on('close', () => { pairs.delete(p); if (!client.destroyed) client.destroy(); });
    forward(p, client, () => upstream);
    forward(p, upstream, () => client);
  });
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(o.port ?? 0, '127.0.0.1', () => resolve()); });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return {
    name: o.name,
    port,
    url(targetUrl) { const u = new URL(targetUrl); u.hostname = '127.0.0.1'; u.port = String(port); return u.toString(); },
    set(next) {
      const was = fault;
      fault = next;
      if (next.kind === 'reset') for (const p of [...pairs]) reset(p);
      if (next.kind === 'blackhole') for (const p of pairs) p.swallowed = true;
      if (was.kind === 'blackhole' && next.kind !== 'blackhole') for (const p of [...pairs]) if (p.swallowed) reset(p);
    },
    fault: () => fault,
    stats: () => ({ ...stats, open: pairs.size }),
    async close() {
      for (const p of [...pairs]) { p.client.destroy(); p.upstream?.destroy(); }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
