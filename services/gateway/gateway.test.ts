// The gateway target in front of two runtimes with different TARGETs: each path goes to the
// target that owns it, over kept-alive connections (counted on the upstream side by a TCP
// relay in front of each), with X-Request-Id and traceparent passed on, SSE streamed through,
// a stopped upstream turned into 503 UNAVAILABLE and a path nobody owns into 404.
import { createServer as createHttpServer, type IncomingMessage as UpstreamRequest } from 'node:http';
import { createServer, connect, type Server } from 'node:net';
import { Writable } from 'node:stream';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { applicationBody } from '../funding/test-fixtures.ts';
import { DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD } from '../identity/users.ts';
import { createLogger, createMetrics, type Logger } from '../kit/index.ts';
import { eventually, startTestCluster, startTestNats, type TestCluster, type TestNats } from '../testing/index.ts';
import { createProxy, type ProxyOptions } from './proxy.ts';
import { DEFAULT_ROUTES, resolveRoutes } from './routes.ts';
import { loadGatewayConfig } from './config.ts';
import { resolveTargets } from '../kit/runtime.ts';
import { registry } from '../main.ts';

/** A TCP relay to `port` that counts the connections it accepts and keeps the bytes it was sent. */
async function relay(port: number): Promise<{ url: string; accepted: () => number; sent: () => string; close(): Promise<void> }> {
  let accepted = 0;
  let sent = '';
  const open = new Set<ReturnType<typeof connect>>();
  const server: Server = createServer((client) => {
    accepted++;
    const upstream = connect(port, '127.0.0.1');
    open.add(client); open.add(upstream);
    client.on('data', (d) => { sent = (sent + d.toString('latin1')).slice(-200_000); });
    client.pipe(upstream).pipe(client);
    const end = () => { client.destroy(); upstream.destroy(); open.delete(client); open.delete(upstream); };
    client.on('error', end); upstream.on('error', end); client.on('close', end); upstream.on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    accepted: () => accepted, sent: () => sent,
    close: () => new Promise<void>((resolve) => { for (const s of open) s.destroy(); server.close(() => resolve()); }),
  };
}

describe('the gateway target', () => {
  let nats: TestNats;
  let a: TestCluster; // identity, orders
  let b: TestCluster; // funding
  let gw: TestCluster;
  let toA: Awaited<ReturnType<typeof relay>>;
  let toB: Awaited<ReturnType<typeof relay>>;
  let auth: Record<string, string>;

  beforeAll(async () => {
    nats = await startTestNats();
    a = await startTestCluster({ TARGET: 'identity,orders' }, { nats });
    b = await startTestCluster({ TARGET: 'funding' }, { nats, databaseUrl: a.databaseUrl });
    [toA, toB] = await Promise.all([relay(a.port), relay(b.port)]);
    gw = await startTestCluster({
      TARGET: 'gateway', GATEWAY_UPSTREAMS: `identity=${toA.url},orders=${toA.url},funding=${toB.url}`, GATEWAY_TIMEOUT_MS: '5000',
    }, { nats, databaseUrl: a.databaseUrl }, { identity: false, checkAnswers: false });
    const login = await gw.post('/api/auth/login', { email: DEV_ADMIN_EMAIL, password: DEV_ADMIN_PASSWORD });
    expect(login.status).toBe(200);
    auth = { authorization: `Bearer ${login.body.accessToken}` };
  }, 120_000);
  afterAll(async () => {
    await gw?.close();
    await b?.close();
    await a?.close();
    await toA?.close();
    await toB?.close();
    await nats?.stop();
  });

  it('routes POST /api/orders to orders and a funding application to funding, each the one that owns it', async () => {
    const order = await gw.post('/api/orders', {
      orderId: `GW-${Date.now()}`, email: 'ana@example.com', paymentToken: 'tok_visa', items: [{ sku: 'SKU-1', quantity: 1 }],
    }, auth);
    expect(order.status).toBe(202);
    expect((await gw.get(`/api/orders/${order.body.id}`, auth)).body.id).toBe(order.body.id);
    const app = await gw.post('/api/funding/applications', applicationBody(), auth);
    expect(app.status).toBe(202);
    const read = await fetch(`${gw.url}/api/funding/applications/${app.body.id}`, { headers: auth });
    expect([read.status, (await read.json()).id]).toEqual([200, app.body.id]);
    // Each came from its own process: neither serves the other's path.
    expect((await a.get(`/api/funding/applications/${app.body.id}`)).status).toBe(404);
    expect((await b.get(`/api/orders/${order.body.id}`)).status).toBe(404);
    expect(toA.sent()).toContain('POST /api/orders HTTP/1.1');
    expect(toB.sent()).toContain(`GET /api/funding/applications/${app.body.id} HTTP/1.1`);
  });

  it('passes a body of undeclared length (chunked) through whole, and a buffered answer byte for byte', async () => {
    // The proxy pipes a declared-length body from the socket and buffers small answers; a
    // chunked body takes the web-stream path. Both must arrive byte for byte.
    const orderId = `GW-CHUNKED-${Date.now()}`;
    const text = JSON.stringify({ orderId, email: 'chunk@example.com', paymentToken: 'tok_visa', items: [{ sku: 'SKU-1', quantity: 2 }] });
    const parts = [text.slice(0, 10), text.slice(10, 40), text.slice(40)];
    const body = new ReadableStream({ pull(ctl) { const p = parts.shift(); if (p === undefined) ctl.close(); else ctl.enqueue(new TextEncoder().encode(p)); } });
    const res = await fetch(`${gw.url}/api/orders`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body, duplex: 'half' } as RequestInit);
    expect(res.status).toBe(202);
    expect((await res.json()).orderId).toBe(orderId);
    expect(toA.sent()).toMatch(/transfer-encoding: chunked/i);
    // A buffered answer: the same bytes and headers through the gateway as from orders itself.
    const id = (await gw.get(`/api/orders?orderId=${orderId}`, auth)).body.id;
    const [through, direct] = await Promise.all([fetch(`${gw.url}/api/orders/${id}`, { headers: auth }), fetch(`${a.url}/api/orders/${id}`, { headers: auth })]);
    expect([through.status, through.headers.get('content-type'), through.headers.get('content-length')]).toEqual([200, direct.headers.get('content-type'), direct.headers.get('content-length')]);
    expect(await through.text()).toBe(await direct.text());
  });

  it('keeps connections alive: 60 requests in turn share a socket; two bursts of 20 at once open at most 20', async () => {
    const before = toA.accepted();
    for (let i = 0; i < 60; i++) expect((await fetch(`${gw.url}/.well-known/jwks.json`)).status).toBe(200);
    const sequential = toA.accepted() - before;
    // One, or two if the box stalled past the idle timeout (4 s) between two of them; 60 without keep-alive.
    expect(sequential).toBeLessThanOrEqual(2);
    const burst = async () => (await Promise.all(Array.from({ length: 20 }, () => fetch(`${gw.url}/.well-known/jwks.json`).then((r) => r.status)))).every((s) => s === 200);
    const mid = toA.accepted();
    expect(await burst()).toBe(true);
    expect(await burst()).toBe(true);
    const bursts = toA.accepted() - mid;
    // The second burst reuses the first one's sockets: 40 requests, never more than 20 at once.
    expect(bursts).toBeLessThanOrEqual(21);
    console.log(`gateway keep-alive: 60 sequential requests -> ${sequential} upstream connection(s); 2 x 20 concurrent -> ${bursts}`);
  });

  it('passes X-Request-Id and traceparent to the service, and echoes the id', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const res = await fetch(`${gw.url}/.well-known/jwks.json`, { headers: { 'x-request-id': 'gw-req-42', traceparent } });
    expect(res.headers.get('x-request-id')).toBe('gw-req-42');
    expect(toA.sent()).toMatch(/x-request-id: gw-req-42\r\n/i);
    expect(toA.sent()).toContain(`traceparent: ${traceparent}\r\n`);
  });

  it('streams Server-Sent Events through as the service writes them', async () => {
    const app = await gw.post('/api/funding/applications', applicationBody(), auth);
    const ctl = new AbortController();
    const res = await fetch(`${gw.url}/api/funding/applications/${app.body.id}/events`, { headers: auth, signal: ctl.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    // No scoring target runs: the status stays non-final and the stream stays open, yet its first event is here.
    const first = await reader.read();
    expect(first.done).toBe(false);
    expect(new TextDecoder().decode(first.value)).toMatch(/event: status\ndata: .*"processing"|event: status/);
    ctl.abort();
  });

  it('relays a WebSocket: the status feed arrives through the gateway, and an unknown id is refused with the service\'s 404', async () => {
    const app = await gw.post('/api/funding/applications', applicationBody(), auth);
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/api/funding/applications/${app.body.id}/ws`, { headers: auth });
    const first = await new Promise<string>((resolve, reject) => {
      ws.once('message', (d) => resolve(d.toString()));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`refused ${res.statusCode}`)));
    });
    expect(JSON.parse(first)).toMatchObject({ id: app.body.id, status: expect.any(String) });
    ws.close(1000);
    const refused = await new Promise<number>((resolve, reject) => {
      const other = new WebSocket(`${gw.url.replace('http', 'ws')}/api/funding/applications/00000000-0000-4000-8000-000000000000/ws`, { headers: auth });
      other.once('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); res.resume(); });
      other.once('open', () => reject(new Error('opened')));
      other.once('error', () => {});
    });
    expect(refused).toBe(404);
  });

  it('answers 404 for a path nobody owns, in the contract format, without calling anyone', async () => {
    const before = [toA.sent().length, toB.sent().length];
    for (const path of ['/api/nobody', '/apix/orders', '/api/ordersx']) {
      const res = await gw.get(path);
      expect([res.status, res.body.error.code], path).toEqual([404, 'NOT_FOUND']);
    }
    expect([toA.sent().length, toB.sent().length]).toEqual(before);
  });

  it('turns a stopped upstream into 503 UNAVAILABLE, and the other keeps answering', async () => {
    await b.close();
    await toB.close();
    const res = await fetch(`${gw.url}/api/funding/applications/00000000-0000-4000-8000-000000000000`, { headers: auth });
    expect(res.status).toBe(503);
    expect((await res.json()).error.code).toBe('UNAVAILABLE');
    const post = await gw.post('/api/funding/applications', applicationBody(), auth);
    expect([post.status, post.body.error.code]).toEqual([503, 'UNAVAILABLE']);
    expect((await fetch(`${gw.url}/.well-known/jwks.json`)).status).toBe(200);
  });
});

/**
 * A proxy (createProxy with `opts`) in front of an upstream answering with `handle`, served
 * on a loopback port; each request's target is named after its path (`/hang` → `hang`), so
 * log lines and per-target limits can be told apart.
 */
async function proxyRig(handle: Parameters<typeof createHttpServer>[1], opts: ProxyOptions) {
  const upstream = createHttpServer(handle!);
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const url = new URL(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`);
  const proxy = createProxy(opts);
  const app = new Hono<{ Variables: { requestId: string; log: Logger } }>();
  app.use(async (c, next) => { c.set('requestId', 'r-rig'); c.set('log', opts.log); await next(); });
  app.all('/*', (c) => proxy.forward(c, { target: c.req.path.slice(1), url }));
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
  await new Promise<void>((resolve) => server.once('listening', resolve));
  return {
    gateway: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      proxy.close();
      server.close();
      upstream.closeAllConnections();
      await new Promise((resolve) => upstream.close(resolve));
    },
  };
}

describe('a client that goes away', () => {
  it('is no upstream failure: the upstream request is dropped (not retried) and logged at debug; a real failure stays a warned 503', async () => {
    // An upstream that never answers /hang, sends half of /partial's declared body, and resets /reset.
    const seen: Record<string, number> = {};
    const closed: Record<string, number> = {};
    let out = '';
    const log = createLogger({ level: 'debug', destination: new Writable({ write(chunk, _e, done) { out += chunk; done(); } }) });
    const lines = () => out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: string; msg: string; upstream?: string });
    const { gateway, close } = await proxyRig((req: UpstreamRequest, res) => {
      const path = req.url!.slice(1);
      seen[path] = (seen[path] ?? 0) + 1;
      req.socket.once('close', () => { closed[path] = (closed[path] ?? 0) + 1; });
      if (path === 'reset') req.socket.destroy();
      else if (path === 'partial') { res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' }); res.write('{"half":'); }
    }, { maxSockets: 4, responseTimeoutMs: 20_000, idleSocketMs: 4000, log });
    try {
      for (const path of ['hang', 'partial']) {
        const ctl = new AbortController();
        const answer = fetch(`${gateway}/${path}`, { signal: ctl.signal }).catch((err: unknown) => err);
        await eventually(() => seen[path] === 1, { what: `the upstream got /${path}` });
        ctl.abort();
        expect(await answer).toBeInstanceOf(Error);
        const line = await eventually(() => lines().find((l) => l.upstream === path), { what: `a log line for /${path}` });
        expect(line, path).toMatchObject({ level: 'debug', msg: 'gateway: client went away; upstream request abandoned' });
        await eventually(() => closed[path] === 1, { what: `the upstream connection of /${path} closed` });
        // A GET reset by our own destroy used to be sent again, to nobody.
        expect(seen[path], path).toBe(1);
      }
      expect(lines().filter((l) => l.msg === 'gateway: upstream unavailable')).toEqual([]);

      const reset = await fetch(`${gateway}/reset`);
      expect(reset.status).toBe(503);
      expect((await reset.json()).error.code).toBe('UNAVAILABLE');
      const warned = await eventually(() => lines().find((l) => l.upstream === 'reset'), { what: 'the warning for /reset' });
      expect(warned).toMatchObject({ level: 'warn', msg: 'gateway: upstream unavailable' });
    } finally {
      await close();
    }
  }, 60_000);
});

describe('a target that hangs', () => {
  it('holds at most GATEWAY_MAX_INFLIGHT_PER_UPSTREAM requests: the next to it get 503 at once, another target is still served', async () => {
    // /hang never answers until the test lets it; /ok answers at once.
    const held: (() => void)[] = [];
    const metrics = createMetrics();
    const { gateway, close } = await proxyRig((req: UpstreamRequest, res) => {
      const reply = () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      if (req.url === '/hang') held.push(reply); else reply();
    }, { maxSockets: 16, responseTimeoutMs: 20_000, idleSocketMs: 4000, maxInflightPerUpstream: 2, log: createLogger({ level: 'silent' }), metrics });
    try {
      const hanging = [fetch(`${gateway}/hang`), fetch(`${gateway}/hang`)];
      await eventually(() => held.length === 2, { what: 'two requests held by the upstream' });
      const refused = await fetch(`${gateway}/hang`);
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect((await refused.json()).error).toEqual({ code: 'UNAVAILABLE', message: 'the hang service is saturated; try again shortly' });
      expect(held).toHaveLength(2);
      expect((await fetch(`${gateway}/ok`)).status).toBe(200);
      expect((await metrics.httpShed.get()).values.find((v) => v.labels.reason === 'upstream_full')?.value).toBe(1);
      // Answered, the slots are free again.
      for (const reply of held.splice(0)) reply();
      for (const r of await Promise.all(hanging)) expect(r.status).toBe(200);
      const again = fetch(`${gateway}/hang`);
      await eventually(() => held.length === 1, { what: 'the next request reached the upstream' });
      held.splice(0).forEach((reply) => reply());
      expect((await again).status).toBe(200);
    } finally {
      await close();
    }
  }, 60_000);
});

describe('the path table', () => {
  it('the gateway is a target of its own: TARGET=all (one process, every route local) leaves it out', () => {
    expect(resolveTargets('all', registry)).not.toContain('gateway');
    expect(resolveTargets('all', registry)).toContain('orders');
    expect(resolveTargets('gateway', registry)).toEqual(['gateway']);
  });

  it('sends each prefix to its owner, the longest prefix first, with Kubernetes Service names by default', () => {
    const routes = resolveRoutes([], []);
    const owner = (path: string) => routes.find((r) => path === r.prefix || path.startsWith(`${r.prefix}/`))?.upstream;
    expect(owner('/api/admin/users/1')).toMatchObject({ target: 'identity' });
    expect(owner('/api/admin/dlq')).toMatchObject({ target: 'admin' });
    expect(owner('/api/orders')?.url.href).toBe('http://orderflow-orders/');
    expect(owner('/api/ordersx')).toBeUndefined();
    expect(Object.keys(DEFAULT_ROUTES)).toContain('/api/funding');
  });

  it('takes GATEWAY_UPSTREAMS and GATEWAY_ROUTES, and refuses malformed ones at boot', () => {
    const c = loadGatewayConfig({ GATEWAY_UPSTREAMS: 'orders=http://10.0.0.5:8080', GATEWAY_ROUTES: '/api/reports=admin' });
    const routes = resolveRoutes(c.GATEWAY_ROUTES, c.GATEWAY_UPSTREAMS);
    expect(routes.find((r) => r.prefix === '/api/orders')?.upstream.url.href).toBe('http://10.0.0.5:8080/');
    expect(routes.find((r) => r.prefix === '/api/reports')?.upstream.target).toBe('admin');
    for (const bad of [{ GATEWAY_UPSTREAMS: 'orders' }, { GATEWAY_UPSTREAMS: 'orders=ftp://x' }, { GATEWAY_ROUTES: 'api=orders' }]) {
      expect(() => loadGatewayConfig(bad), JSON.stringify(bad)).toThrow(/GATEWAY_/);
    }
  });
});
