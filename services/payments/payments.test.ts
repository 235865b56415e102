// Charged exactly once even when the gateway forgets Idempotency-Keys: after an
// ambiguous failure, payments asks the gateway what it holds for the order before
// charging again (CONTRACTS.md: "to learn what happened after a timeout").
import { randomUUID } from 'node:crypto';
import { Hono } from 'hono';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startGatewaySimulator, type RunningGatewaySimulator } from '../simulators/gateway.ts';
import { serveApp, type ServedApp } from '../simulators/serve.ts';
import { startCommerce, uid, type Commerce } from '../testing/index.ts';

let gw: RunningGatewaySimulator;
let proxy: ServedApp;
let k: Commerce;
beforeAll(async () => {
  gw = await startGatewaySimulator({ port: 0, seed: 5 });
  // A gateway that honours no Idempotency-Key: every request gets a fresh one.
  const forgetful = new Hono().all('*', async (c) => {
    const headers = new Headers(c.req.raw.headers);
    if (headers.has('idempotency-key')) headers.set('idempotency-key', randomUUID());
    headers.delete('host');
    const body = c.req.method === 'GET' ? undefined : await c.req.text();
    const res = await fetch(gw.url + c.req.path + (new URL(c.req.url).search), { method: c.req.method, headers, body });
    return new Response(await res.text(), { status: res.status, headers: res.headers });
  });
  proxy = await serveApp(forgetful, { port: 0 });
  k = await startCommerce({ PAYMENT_GATEWAY_URL: proxy.url, PAYMENTS_BREAKER_VOLUME: '1000000' }, { gw });
});
afterAll(async () => { await k?.close(); await proxy?.close(); await gw?.close(); });

it('apply-then-500s against a gateway without idempotency: looked up, not charged twice', async () => {
  const sku = uid('FORGET');
  await k.product(sku, 100, 800);
  gw.sim.setKnobs({ fail500AfterApplyRate: 0.5 });
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) ids.push((await k.order([{ sku, quantity: 1 }])).body.id);
  const finals = await Promise.all(ids.map((id) => k.final(id, 60_000)));
  gw.sim.setKnobs({ fail500AfterApplyRate: 0 });
  expect(gw.sim.stats().errors5xx).toBeGreaterThan(0);
  for (const o of finals) {
    expect(o.status).toBe('SHIPPED');
    expect(gw.sim.chargesFor(o.id).filter((c) => c.status === 'succeeded')).toHaveLength(1);
  }
  expect(gw.sim.stats().replays).toBe(0);
  expect((await k.books()).problems).toEqual([]);
});
