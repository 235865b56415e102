import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { Kvm } from '@nats-io/kv';
import type { KV } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestNats, type TestNats } from '../../testing/index.ts';
import type { Principal } from '../auth.ts';
import { createMetrics } from '../metrics.ts';
import { onError } from './errors.ts';
import { addressKey, clientAddress, createLimitShare, createRateLimiter, type LimitShare, type RateLimitConfig, type ShareSource } from './rate-limit.ts';

const silent = { error() {}, warn() {}, info() {}, debug() {} } as never;
const base: RateLimitConfig = { rps: 10, burst: 20, anonRps: 2, anonBurst: 4, trustedProxies: 0 };

// An app as a route declaration builds it: a stand-in auth middleware (the principal from a
// test header, as kit/auth.ts would set it from a token), then the limiter, then the handler.
function appWith(o: { config?: Partial<RateLimitConfig>; share?: ShareSource; now?: () => number; metrics?: ReturnType<typeof createMetrics> } = {}) {
  const app = new Hono();
  app.onError(onError(silent));
  const limit = createRateLimiter({ share: o.share ?? { fraction: () => 1 }, now: o.now, metrics: o.metrics }, { ...base, ...o.config });
  app.get('/x', async (c, next) => {
    const sub = c.req.header('x-test-sub');
    if (sub) c.set('principal' as never, { sub, kind: 'user', roles: [c.req.header('x-test-role') ?? 'customer'], scopes: [] } satisfies Principal as never);
    await next();
  }, limit, (c) => c.json({ ok: true }));
  return app;
}

const get = async (app: Hono, headers: Record<string, string> = {}) => {
  const res = await app.request('/x', { headers });
  return { status: res.status, headers: res.headers, body: await res.json() as any };
};
const statuses = async (app: Hono, n: number, headers: Record<string, string> = {}) => {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await get(app, headers)).status);
  return out;
};
const count = (xs: number[], s: number) => xs.filter((x) => x === s).length;

describe('rate limiter (one replica, a clock of its own)', () => {
  it('lets a principal\'s burst through, then the steady rate, and refuses the rest with the contract\'s 429', async () => {
    let t = 0;
    const app = appWith({ now: () => t });
    const alice = { 'x-test-sub': 'alice' };
    const first = await statuses(app, 25, alice);
    expect(count(first, 200)).toBe(20);
    expect(first.slice(20)).toEqual([429, 429, 429, 429, 429]);

    const refused = await get(app, alice);
    expect(refused.status).toBe(429);
    expect(refused.body).toEqual({ error: { code: 'RATE_LIMITED', message: expect.stringContaining('retry in 1 s') } });
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(refused.headers.get('ratelimit-limit')).toBe('10');
    expect(refused.headers.get('ratelimit-remaining')).toBe('0');
    expect(Number(refused.headers.get('ratelimit-reset'))).toBeGreaterThanOrEqual(1);

    // One second later: the rate's 10, not another burst.
    t += 1000;
    expect(count(await statuses(app, 15, alice), 200)).toBe(10);
    // Ten seconds idle: the bucket is full again, never fuller.
    t += 10_000;
    expect(count(await statuses(app, 25, alice), 200)).toBe(20);
  });

  it('sends RateLimit-Limit, -Remaining and -Reset on accepted responses too, Remaining counting down', async () => {
    let t = 0;
    const app = appWith({ now: () => t, config: { rps: 5, burst: 5 } });
    const seen = [];
    for (let i = 0; i < 5; i++) {
      const r = await get(app, { 'x-test-sub': 'bob' });
      expect(r.status).toBe(200);
      seen.push([r.headers.get('ratelimit-limit'), r.headers.get('ratelimit-remaining'), r.headers.get('ratelimit-reset')]);
    }
    expect(seen).toEqual([['5', '4', '1'], ['5', '3', '1'], ['5', '2', '1'], ['5', '1', '1'], ['5', '0', '1']]);
    t += 400; // two tokens back
    expect((await get(app, { 'x-test-sub': 'bob' })).headers.get('ratelimit-remaining')).toBe('1');
  });

  it('gives Retry-After as the wait for this replica\'s next token (its share of a slow limit)', async () => {
    let t = 0;
    // 1 request/s for the cluster, a quarter of it here: one every 4 s.
    const app = appWith({ now: () => t, share: { fraction: () => 0.25 }, config: { rps: 1, burst: 4 } });
    const carol = { 'x-test-sub': 'carol' };
    expect(await statuses(app, 2, carol)).toEqual([200, 429]);
    const r = await get(app, carol);
    expect(r.headers.get('retry-after')).toBe('4');
    t += 3900;
    expect((await get(app, carol)).status).toBe(429);
    t += 100;
    expect((await get(app, carol)).status).toBe(200);
  });

  it('limits admins too, each principal on its own, and a replica\'s share scales burst and rate', async () => {
    let t = 0;
    const app = appWith({ now: () => t, share: { fraction: () => 0.5 } });
    expect(count(await statuses(app, 15, { 'x-test-sub': 'root', 'x-test-role': 'admin' }), 200)).toBe(10);
    expect(count(await statuses(app, 15, { 'x-test-sub': 'dave' }), 200)).toBe(10);
    t += 1000;
    expect(count(await statuses(app, 15, { 'x-test-sub': 'dave' }), 200)).toBe(5);
  });

  it('limits calls without a principal by client address, believing X-Forwarded-For only from trusted proxies', async () => {
    let t = 0;
    const behindIngress = appWith({ now: () => t, config: { trustedProxies: 1 } });
    // The ingress appends the address it saw; whatever the client wrote to the left is its own invention.
    const from = (ip: string, spoof = '') => ({ 'x-forwarded-for': spoof ? `${spoof}, ${ip}` : ip });
    expect(count(await statuses(behindIngress, 6, from('203.0.113.7')), 200)).toBe(4);
    expect(count(await statuses(behindIngress, 6, from('203.0.113.7', '198.51.100.1')), 200)).toBe(0);
    expect(count(await statuses(behindIngress, 6, from('203.0.113.8')), 200)).toBe(4);
    // One IPv6 subscriber rotating through its /64 is one client.
    expect(count(await statuses(behindIngress, 3, from('2001:db8:1:2::1')), 200)).toBe(3);
    expect(count(await statuses(behindIngress, 3, from('2001:db8:1:2:ffff::9')), 200)).toBe(1);

    // No trusted proxy: the header is ignored, every request here comes from the same (socketless) address.
    const direct = appWith({ now: () => t });
    expect(count(await statuses(direct, 3, from('203.0.113.9')), 200)).toBe(3);
    expect(count(await statuses(direct, 3, from('203.0.113.10')), 200)).toBe(1);
  });

  it('answers 503 while this replica holds no share, and counts refusals by scope', async () => {
    const metrics = createMetrics();
    let fraction = 0;
    const app = appWith({ share: { fraction: () => fraction }, metrics, now: () => 0 });
    const none = await get(app, { 'x-test-sub': 'erin' });
    expect(none.status).toBe(503);
    expect(none.body.error.code).toBe('UNAVAILABLE');
    expect(none.headers.get('retry-after')).toBe('1');
    fraction = 1;
    await statuses(app, 22, { 'x-test-sub': 'erin' });
    await statuses(app, 5);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^orderflow_rate_limit_rejections_total\{scope="principal"\} 2$/m);
    expect(text).toMatch(/^orderflow_rate_limit_rejections_total\{scope="anonymous"\} 1$/m);
  });

  it('turns a limit off at 0, and forgets the least recently used key beyond maxKeys', async () => {
    const off = appWith({ config: { rps: 0 } });
    expect(count(await statuses(off, 30, { 'x-test-sub': 'frank' }), 200)).toBe(30);
    const small = appWith({ now: () => 0, config: { maxKeys: 2, burst: 1 } });
    expect(await statuses(small, 2, { 'x-test-sub': 'k1' })).toEqual([200, 429]);
    await get(small, { 'x-test-sub': 'k2' });
    await get(small, { 'x-test-sub': 'k3' }); // k1 forgotten
    expect((await get(small, { 'x-test-sub': 'k1' })).status).toBe(200);
  });

  it('reads the client address from the socket under @hono/node-server', async () => {
    const app = new Hono();
    app.get('/who', (c) => c.json({ direct: clientAddress(c, 0), proxied: clientAddress(c, 1) }));
    const server = await new Promise<ServerType>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
    });
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/who`;
      expect(await (await fetch(url, { headers: { 'x-forwarded-for': '203.0.113.5' } })).json()).toEqual({ direct: '127.0.0.1', proxied: '203.0.113.5' });
      // A trusted proxy that sent nothing usable: the socket's address, not the client's text.
      expect(await (await fetch(url, { headers: { 'x-forwarded-for': 'not-an-ip' } })).json()).toEqual({ direct: '127.0.0.1', proxied: '127.0.0.1' });
    } finally {
      server.close();
    }
  });

  it('keys addresses: IPv4 as is, IPv4-mapped IPv6 as IPv4, IPv6 by /64', () => {
    expect(addressKey('192.0.2.1')).toBe('192.0.2.1');
    expect(addressKey('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(addressKey('2001:db8:0:1::5')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:0db8:0000:0001:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:0:1::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
  });
});

describe('rate limiter across replicas (real NATS)', () => {
  const heartbeatMs = 200;
  let nats: TestNats;
  const conns: NatsConnection[] = [];
  const shares: LimitShare[] = [];
  const servers: ServerType[] = [];

  beforeAll(async () => {
    nats = await startTestNats();
  });
  afterAll(async () => {
    for (const s of shares) await s.stop().catch(() => {});
    for (const s of servers) s.close();
    for (const nc of conns) await nc.close().catch(() => {});
    await nats?.stop();
  });

  // A replica: its own NATS connection, its own share of one bucket, its own HTTP server.
  async function replica(bucket: string, memberId: string, config: Partial<RateLimitConfig>) {
    const nc = await connect({ servers: nats.url });
    conns.push(nc);
    const kvm = new Kvm(nc);
    // One replica creates the bucket (provisioning does it in production); the rest open it.
    // A lease of 9 heartbeats: the test process runs both replicas, the client and NATS's
    // callbacks on one loaded event loop, and a lapsed lease costs a rejoin (503s meanwhile).
    const kv: KV = await kvm.create(bucket, { ttl: 10 * heartbeatMs });
    const share = createLimitShare({ kv, memberId, heartbeatMs, log: silent });
    shares.push(share);
    await share.start();
    const app = appWith({ share, config });
    const server = await new Promise<ServerType>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
    });
    servers.push(server);
    return { nc, kv, share, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/x` };
  }

  // Hammers the URLs in turn from `workers` loops until `until()`; counts by status.
  async function hammer(urls: string[], o: { workers: number; headers?: Record<string, string>; until: () => boolean }) {
    const byUrl = urls.map(() => ({ ok: 0, limited: 0, other: 0, firstRefusal: '', firstOther: '' }));
    let turn = 0;
    const started = performance.now();
    await Promise.all(Array.from({ length: o.workers }, async () => {
      while (!o.until()) {
        const i = turn++ % urls.length;
        const res = await fetch(urls[i]!, { headers: o.headers });
        const text = await res.text();
        const c = byUrl[i]!;
        if (res.status === 200) c.ok++;
        else if (res.status === 429) { c.limited++; c.firstRefusal ||= text; }
        else { c.other++; c.firstOther ||= `${res.status} ${text}`; }
      }
    }));
    return { byUrl, seconds: (performance.now() - started) / 1000 };
  }

  it('two replicas behind one limit: accepted requests over the run ≤ limit × its length + burst', async () => {
    // Anonymous calls: both replicas key them by the socket's address (127.0.0.1).
    const config = { anonRps: 20, anonBurst: 10 };
    const a = await replica('rate-limit-pair', 'a', config);
    const b = await replica('rate-limit-pair', 'b', config);
    await eventually(() => a.share.fraction() === 0.5 && b.share.fraction() === 0.5, { what: 'half the limits each' });

    let sent = 0;
    const run = await hammer([a.url, b.url], { workers: 8, until: () => sent++ >= 400 });
    const accepted = run.byUrl[0]!.ok + run.byUrl[1]!.ok;
    const bound = config.anonRps * run.seconds + config.anonBurst;
    // Measured by counting: the run's length comes from the client's clock, which brackets every request.
    console.log(`two replicas: ${accepted} accepted of ${run.byUrl.reduce((s, c) => s + c.ok + c.limited + c.other, 0)} in ${run.seconds.toFixed(2)} s (bound ${bound.toFixed(1)}); per replica ${run.byUrl.map((c) => `${c.ok} ok/${c.limited} 429/${c.other} other`).join(', ')}`);
    if (run.byUrl.some((c) => c.other)) console.log(run.byUrl.map((c) => c.firstOther));
    expect(run.byUrl.every((c) => c.other === 0)).toBe(true);
    expect(accepted).toBeLessThanOrEqual(bound);
    // The limit was reached (so the bound means something) and both replicas took their part.
    expect(run.byUrl[0]!.limited + run.byUrl[1]!.limited).toBeGreaterThan(0);
    expect(Math.min(run.byUrl[0]!.ok, run.byUrl[1]!.ok)).toBeGreaterThanOrEqual(config.anonBurst / 2);

    // A client pinned to one replica gets that replica's half (the static split's cost, see rate-limit.ts).
    const pinned = await hammer([a.url], { workers: 4, headers: { 'x-test-sub': 'pinned' }, until: (() => { let n = 0; return () => n++ >= 150; })() });
    console.log(`pinned to one of two: ${pinned.byUrl[0]!.ok} accepted, ${pinned.byUrl[0]!.other} other in ${pinned.seconds.toFixed(2)} s (whole limit would be ${(10 * pinned.seconds + 20).toFixed(1)})`);
    expect(pinned.byUrl[0]!.other).toBe(0);
    expect(pinned.byUrl[0]!.ok).toBeGreaterThan(0);
    expect(pinned.byUrl[0]!.ok).toBeLessThanOrEqual(base.rps * 0.5 * pinned.seconds + base.burst * 0.5);
  });

  it('a replica that stops heartbeating (kill -9) keeps its share counted until its lease ends; then the other reclaims it', async () => {
    const a = await replica('rate-limit-kill', 'a', {});
    const b = await replica('rate-limit-kill', 'b', {});
    await eventually(() => a.share.fraction() === 0.5 && b.share.fraction() === 0.5, { what: 'half the limits each' });
    const observer = await connect({ servers: nats.url });
    conns.push(observer);
    const kv = await new Kvm(observer).open('rate-limit-kill');

    // a dies without a goodbye: its connection is gone, its key stays until the bucket's TTL.
    await a.nc.close();
    // Each sample reads b's fraction and only then whether a's key is still there: b above half
    // while a's key still exists afterwards would be a's share counted twice.
    let grewWhileAlive = 0;
    let samples = 0;
    let gone = false;
    while (!gone || b.share.fraction() < 1) {
      const f = b.share.fraction();
      const entry = await kv.get('members.a');
      const present = !!entry && entry.operation === 'PUT';
      if (f > 0.5 && present) grewWhileAlive++;
      if (!present) gone = true;
      samples++;
      await new Promise((r) => setTimeout(r, 5));
      if (samples > 4000) break;
    }
    console.log(`kill -9: ${samples} samples; a's key gone: ${gone}; b's fraction ${b.share.fraction()}`);
    expect(gone).toBe(true);
    expect(grewWhileAlive).toBe(0);
    expect(b.share.fraction()).toBe(1);
    expect(b.share.members()).toBe(1);
    // Had a been alive but cut off from NATS, it would still serve on the share it held (the
    // limiter's chosen availability over exactness while isolated; see rate-limit.ts).
    expect(a.share.fraction()).toBe(0.5);
  });
});
