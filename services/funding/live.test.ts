// Live status: the WebSocket endpoint, and the one status hub that feeds it and SSE.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { eventually } from '../testing/index.ts';
import { startGatewaySimulator, type RunningGatewaySimulator } from '../simulators/gateway.ts';
import { startTestCluster, type TestCluster } from '../testing/index.ts';
import { statusesFromDb } from './routes.ts';
import { createStatusHub } from './status-hub.ts';
import { applicationBody, pendingReviewBody, rejectedBody, waitForStatus } from './test-fixtures.ts';

let c: TestCluster;
let gw: RunningGatewaySimulator;
beforeAll(async () => {
  gw = await startGatewaySimulator({ port: 0, seed: 1 });
  c = await startTestCluster({ TARGET: 'funding,funding-scoring', PAYMENT_GATEWAY_URL: gw.url, FUNDING_RISK_THREADS: '1', FUNDING_RISK_NICE: '0', FUNDING_RECONCILE_INTERVAL_MS: '0', DB_POOL_MAX: '20' });
});
afterAll(async () => { await c?.close(); await gw?.close(); });
// The admin's token, sent as a header by these sockets unless a test puts one in the query.
let token: string;
beforeAll(async () => { token = await c.token(); });
const withToken = (path: string) => (path.includes('access_token=') ? {} : { headers: { authorization: `Bearer ${token}` } });

const wsUrl = (path: string) => `${c.url.replace('http', 'ws')}${path}`;

type Opened = { ws: WebSocket; messages: any[]; closed: Promise<{ code: number; reason: string }>; open: Promise<void> };
/** Connect, keeping every message from the first frame on. */
function connect(path: string): Opened {
  const ws = new WebSocket(wsUrl(path), withToken(path));
  const messages: any[] = [];
  ws.on('message', (d) => messages.push(JSON.parse(String(d))));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  const open = new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
  return { ws, messages, closed, open };
}

/** The status the server refused an upgrade with. */
async function refusedWith(path: string): Promise<number> {
  const ws = new WebSocket(wsUrl(path), withToken(path));
  return await new Promise((resolve, reject) => {
    ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate(); });
    ws.on('open', () => { ws.close(); reject(new Error(`${path} was upgraded`)); });
    ws.on('error', () => {});
  });
}

const gauge = async (name: string) => (await c.deps.metrics.registry.getSingleMetric(name)!.get()).values[0]?.value;
const hubStats = async () => ({ upstream: await gauge('orderflow_funding_live_upstream_subscriptions'), connections: await gauge('orderflow_funding_live_connections') });

describe('GET .../ws', () => {
  it('sends the current status at once, each change, and closes with 1000 at the final status', async () => {
    const id = (await c.post('/api/funding/applications', applicationBody())).body.id;
    // The access token may ride in the query string (browsers cannot set headers on a WebSocket).
    const s = connect(`/api/funding/applications/${id}/ws?access_token=${token}`);
    const closed = await s.closed;
    expect(closed.code).toBe(1000);
    const statuses = s.messages.map((m) => m.status);
    expect(statuses.at(-1)).toBe('disbursed');
    expect(statuses[0]).toMatch(/processing|risk_scoring/);
    const order = ['processing', 'risk_scoring', 'approved', 'disbursing', 'disbursed'];
    const idx = statuses.map((x) => order.indexOf(x));
    expect(idx).toEqual([...idx].sort((a, b) => a - b));
    expect(new Set(statuses).size).toBe(statuses.length);
    for (const m of s.messages) expect(Object.keys(m).sort()).toEqual(['id', 'status', 'updatedAt']);
    const full = await c.get(`/api/funding/applications/${id}`);
    expect(s.messages.at(-1)).toEqual({ id, status: 'disbursed', updatedAt: full.body.updatedAt });
  });

  it('closes at once with the status of an application already final', async () => {
    const id = (await c.post('/api/funding/applications', rejectedBody())).body.id;
    await waitForStatus(c.get, id, 'rejected');
    const s = connect(`/api/funding/applications/${id}/ws`);
    expect((await s.closed).code).toBe(1000);
    expect(s.messages.map((m) => m.status)).toEqual(['rejected']);
  });

  it('takes ?access_token= on SSE as well; a bad one, or none, is refused with 401 before any stream or upgrade', async () => {
    const id = (await c.post('/api/funding/applications', rejectedBody())).body.id;
    await waitForStatus(c.get, id, 'rejected');
    const res = await fetch(`${c.url}/api/funding/applications/${id}/events?access_token=${token}`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('"status":"rejected"');
    const bad = await fetch(`${c.url}/api/funding/applications/${id}/events?access_token=abc.def.ghi`);
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toContain('Bearer');
    expect(await refusedWith(`/api/funding/applications/${id}/ws?access_token=abc.def.ghi`)).toBe(401);
    expect((await c.as(null).get(`/api/funding/applications/${id}/events`)).status).toBe(401);
  });

  it('refuses the upgrade: 404 for an unknown application or path, 400 for a malformed id; a plain GET gets 426', async () => {
    expect(await refusedWith('/api/funding/applications/00000000-0000-4000-8000-000000000000/ws')).toBe(404);
    expect(await refusedWith('/api/funding/applications/nope/ws')).toBe(400);
    expect(await refusedWith('/api/no-such-thing/ws')).toBe(404);
    const known = (await c.post('/api/funding/applications', rejectedBody())).body.id;
    const plain = await c.get(`/api/funding/applications/${known}/ws`);
    expect(plain.status).toBe(426);
    expect(plain.body.error.code).toBe('UPGRADE_REQUIRED');
    // Any other Upgrade is an ordinary request, answered (it hung on the upgrade path before).
    const { get } = await import('node:http');
    const h2c = await new Promise<number>((resolve, reject) => {
      const req = get(`${c.url}/healthz`, { headers: { connection: 'upgrade', upgrade: 'h2c' }, timeout: 5000 }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
      req.on('timeout', () => req.destroy(new Error('no answer')));
      req.on('error', reject);
    });
    expect(h2c).toBe(200);
  });

  it('feeds 200 connections to one application from one upstream subscription, and lets it go when they close', async () => {
    const id = (await c.post('/api/funding/applications', pendingReviewBody())).body.id;
    await waitForStatus(c.get, id, 'pending_review');
    const before = await hubStats();
    expect(before).toEqual({ upstream: 0, connections: 0 });

    const conns = Array.from({ length: 200 }, () => connect(`/api/funding/applications/${id}/ws`));
    await Promise.all(conns.map((s) => s.open));
    await eventually(() => conns.every((s) => s.messages.length === 1), { what: 'the first status on every connection' });
    // One SSE stream beside them: the same hub.
    const sse = fetch(`${c.url}/api/funding/applications/${id}/events`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.text());
    await eventually(async () => (await hubStats()).connections === 201, { what: '201 connections in the hub' });
    expect(await hubStats()).toEqual({ upstream: 1, connections: 201 });

    const decided = await c.post(`/api/funding/applications/${id}/decision`, { decision: 'rejected', reviewer: 'ana' });
    expect(decided.status).toBe(200);
    const closes = await Promise.all(conns.map((s) => s.closed));
    expect(closes.every((x) => x.code === 1000)).toBe(true);
    for (const s of conns) expect(s.messages.map((m) => m.status)).toEqual(['pending_review', 'rejected']);
    expect(await sse).toContain('"status":"rejected"');
    await eventually(async () => (await hubStats()).connections === 0, { what: 'connections released' });
    expect(await hubStats()).toEqual({ upstream: 0, connections: 0 });
  });

  it('releases a connection the client closes before the final status', async () => {
    const id = (await c.post('/api/funding/applications', pendingReviewBody())).body.id;
    await waitForStatus(c.get, id, 'pending_review');
    const s = connect(`/api/funding/applications/${id}/ws`);
    await s.open;
    await eventually(async () => (await hubStats()).connections === 1, { what: 'one connection' });
    s.ws.close(1000);
    await s.closed;
    await eventually(async () => (await hubStats()).connections === 0, { what: 'connection released' });
    expect((await hubStats()).upstream).toBe(0);
  });
});

describe('status hub', () => {
  it('polls Postgres once per application, not per connection, while NATS is down', async () => {
    const ids = [];
    for (const body of [rejectedBody(), rejectedBody()]) ids.push((await c.post('/api/funding/applications', body)).body.id as string);
    for (const id of ids) await waitForStatus(c.get, id, 'rejected');
    const reads: string[][] = [];
    const hub = createStatusHub({
      nc: c.deps.nats.nc, connected: () => false, pollMs: 50, log: c.deps.log,
      read: async (batch) => { reads.push(batch); return await statusesFromDb(c.deps.orm, batch); },
    });
    const got = new Map<string, string[]>();
    const watches = [];
    for (let i = 0; i < 100; i++) {
      const id = ids[i % 2]!;
      const key = `${i}`;
      got.set(key, []);
      watches.push(hub.watch(id, (s) => got.get(key)!.push(s.status)));
    }
    await eventually(() => reads.length >= 3, { what: 'three polls' });
    for (const w of watches) w.stop();
    await eventually(() => hub.stats().polledRows === reads.length * 2, { what: 'polls settled' });
    // Every poll is one statement for both applications, whatever the 100 connections.
    for (const batch of reads) expect([...batch].sort()).toEqual([...ids].sort());
    for (const statuses of got.values()) expect(statuses[0]).toBe('rejected');
    expect(hub.stats()).toMatchObject({ upstreamSubscriptions: 0, applications: 0, listeners: 0 });
    hub.stop();
  });
});
