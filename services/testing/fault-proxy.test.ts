// The chaos suite's TCP fault proxy against an echo server: each fault does what it says,
// and healing gives working connections back.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from './fault-proxy.ts';
import { eventually } from './servers.ts';

let echo: Server;
let proxy: FaultProxy;
beforeAll(async () => {
  echo = createServer((s) => { s.on('error', () => {}); s.pipe(s); });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  proxy = await startFaultProxy({ name: 'echo', targetPort: (echo.address() as { port: number }).port });
});
afterAll(async () => { await proxy.close(); echo.close(); });

/** A connection to the proxy that collects what comes back, and how it ended. */
async function client() {
  const s: Socket = connect(proxy.port, '127.0.0.1');
  const got: Buffer[] = [];
  let error: string | undefined;
  let closed = false;
  s.on('data', (d) => got.push(d));
  s.on('error', (e: NodeJS.ErrnoException) => { error = e.code; });
  s.on('close', () => { closed = true; });
  await new Promise<void>((r, j) => { s.once('connect', () => r()); s.once('error', j); });
  return { s, text: () => Buffer.concat(got).toString(), error: () => error, closed: () => closed };
}

describe('fault proxy', () => {
  it('passes bytes through when there is no fault', async () => {
    const c = await client();
    c.s.write('hello');
    await eventually(() => c.text() === 'hello', { timeoutMs: 5000, what: 'echo' });
    c.s.destroy();
  });

  it('latency: every chunk is held at least latencyMs each way, in order', async () => {
    proxy.set({ kind: 'latency', latencyMs: 150 });
    const c = await client();
    const t0 = performance.now();
    c.s.write('a'); c.s.write('b'); c.s.write('c');
    await eventually(() => c.text() === 'abc', { timeoutMs: 5000, what: 'echo in order', intervalMs: 5 });
    // A lower bound only: the proxy cannot deliver before the delay, however loaded the box is.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
    proxy.set({ kind: 'none' });
    c.s.destroy();
  });

  it('reset: open connections and new ones get an RST', async () => {
    const open = await client();
    proxy.set({ kind: 'reset' });
    await eventually(() => open.closed(), { timeoutMs: 5000, what: 'open connection reset' });
    expect(open.error()).toBe('ECONNRESET');
    const fresh = connect(proxy.port, '127.0.0.1');
    const code = await new Promise<string | undefined>((r) => { fresh.on('error', (e: NodeJS.ErrnoException) => r(e.code)); fresh.on('close', () => r(undefined)); });
    expect(code).toBe('ECONNRESET');
    proxy.set({ kind: 'none' });
  });

  it('black hole: bytes are accepted and dropped; healing resets the swallowed connection, and new ones work', async () => {
    const before = await client();
    proxy.set({ kind: 'blackhole' });
    const during = await client(); // accepted, as a black hole does
    before.s.write('lost-1');
    during.s.write('lost-2');
    await eventually(() => proxy.stats().droppedBytes >= 12, { timeoutMs: 5000, what: 'bytes dropped' });
    await new Promise((r) => setTimeout(r, 200));
    expect(before.text() + during.text()).toBe('');
    expect(before.closed() || during.closed()).toBe(false);
    proxy.set({ kind: 'none' });
    await eventually(() => before.closed() && during.closed(), { timeoutMs: 5000, what: 'swallowed connections reset' });
    const after = await client();
    after.s.write('back');
    await eventually(() => after.text() === 'back', { timeoutMs: 5000, what: 'echo after healing' });
    after.s.destroy();
  });
});
