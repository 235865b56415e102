// Idempotency-Key across a crash: the process killed, or Postgres stopped, while keyed orders
// are in flight. A retry with the same key and body must get the original 202 (the order
// committed) or a fresh 202 (it did not): never 409 REQUEST_IN_PROGRESS, never DUPLICATE_ORDER.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, eventually, startTestNats, startTestPostgres, type TestNats, spawnCluster, startTestCluster } from '../testing/index.ts';

let nats: TestNats;
beforeAll(async () => { nats = await startTestNats(); });
afterAll(async () => { await nats?.stop(); });

type Sent = { key: string; body: string; orderId: string; status?: number; id?: string };

/** Clients that post keyed orders until `stop()`; a dropped connection ends a client. */
function keyedLoad(url: () => string, auth: Record<string, string>, tag: string, clients = 16) {
  const sent: Sent[] = [];
  let stopped = false;
  const client = async (n: number) => {
    for (let i = 0; !stopped; i++) {
      const orderId = `${tag}-${n}-${i}`;
      const s: Sent = { key: `key-${orderId}`, orderId, body: JSON.stringify({ orderId, email: 'key@example.com', paymentToken: 'tok_visa', items: [{ sku: 'SKU-1', quantity: 1 }] }) };
      sent.push(s);
      try {
        const res = await fetch(`${url()}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': s.key, ...auth }, body: s.body });
        s.status = res.status;
        if (res.status === 202) s.id = (await res.json()).id;
        else await res.text();
      } catch { return; } // the process died under us
    }
  };
  const running = Promise.all(Array.from({ length: clients }, (_, n) => client(n)));
  return { sent, accepted: () => sent.filter((s) => s.status === 202).length, async stop() { stopped = true; await running; } };
}

/** Retry every key with its body: each must be a 202, with the first id if there was one, and the stored order's id. */
async function expectRetriesAnswered(url: string, auth: Record<string, string>, sent: Sent[]) {
  const wrong: string[] = [];
  for (const s of sent) {
    const res = await fetch(`${url}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': s.key, ...auth }, body: s.body });
    const body = await res.json();
    if (res.status !== 202) { wrong.push(`${s.key}: first ${s.status ?? 'no answer'}, retry ${res.status} ${body.error?.code}`); continue; }
    if (s.id && body.id !== s.id) wrong.push(`${s.key}: first id ${s.id}, retry id ${body.id}`);
    const stored = await (await fetch(`${url}/api/orders?orderId=${s.orderId}`, { headers: auth })).json();
    if (stored.id !== body.id) wrong.push(`${s.key}: retry id ${body.id}, stored id ${stored.id}`);
  }
  expect(wrong.slice(0, 10), `${wrong.length} of ${sent.length} retries wrong`).toEqual([]);
}

describe('Idempotency-Key across a crash', () => {
  it('kill -9 with keyed orders in flight: each retry gets its original 202 or a fresh one, none 409', async () => {
    const db = await createTestDatabase();
    const env = { NATS_URL: nats.url, DATABASE_URL: db.url, TARGET: 'orders' };
    try {
      const first = await spawnCluster(env);
      const auth = await first.authHeaders();
      const load = keyedLoad(() => first.url, auth, 'KILL');
      await eventually(() => load.accepted() >= 200, { what: '200 accepted orders' });
      await first.kill9();
      await load.stop();
      const unanswered = load.sent.filter((s) => s.status === undefined);
      expect(unanswered.length).toBeGreaterThan(0);
      const second = await spawnCluster(env);
      try {
        await expectRetriesAnswered(second.url, auth, load.sent);
      } finally {
        expect(await second.sigterm()).toBe(0);
      }
    } finally {
      await db.drop();
    }
  });

  it('Postgres stopped (immediate) with keyed orders in flight: each retry gets the stored order or a fresh 202, none 409', async () => {
    const pgsrv = await startTestPostgres();
    const c = await startTestCluster({ TARGET: 'orders', DATABASE_URL: pgsrv.url }, { nats });
    try {
      const auth = await c.authHeaders();
      const load = keyedLoad(() => c.url, auth, 'PG');
      await eventually(() => load.accepted() >= 200, { what: '200 accepted orders' });
      await pgsrv.kill();
      // Let the requests in flight fail (503) before the load stops.
      await new Promise((r) => setTimeout(r, 300));
      await load.stop();
      const failed = load.sent.filter((s) => s.status !== 202);
      expect(failed.length).toBeGreaterThan(0);
      await pgsrv.restart();
      await eventually(async () => (await c.get('/readyz')).status === 200, { what: '/readyz 200 after restart' });
      await expectRetriesAnswered(c.url, auth, load.sent);
    } finally {
      await c.close().catch(() => {});
      await pgsrv.stop();
    }
  });
});
