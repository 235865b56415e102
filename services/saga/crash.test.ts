// The seed 003 table, part 3: NATS down for a while, and kill -9 mid-burst.
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase, eventually, startTestNats, spawnCluster, checkBooks, FAST_ENV, startCommerce, uid } from '../testing/index.ts';
import { startGatewaySimulator } from '../simulators/gateway.ts';
import { startSmsSimulator } from '../simulators/sms.ts';
import { startSmtpSink } from '../simulators/smtp-sink.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => { for (const c of cleanups.reverse()) await c().catch(() => {}); });

describe('NATS down for a while', () => {
  it('orders are still accepted, and the saga resumes when NATS is back', async () => {
    const k = await startCommerce();
    cleanups.push(() => k.close());
    const sku = uid('NATSDOWN');
    await k.product(sku, 50, 400);
    await k.c.nats.kill();
    const accepted = [];
    for (let i = 0; i < 10; i++) {
      const r = await k.order([{ sku, quantity: 1 }]);
      expect(r.status).toBe(202);
      accepted.push(r.body.id);
    }
    await new Promise((r) => setTimeout(r, 1500));
    for (const id of accepted) expect((await k.c.get(`/api/orders/${id}`)).body.status).toBe('PENDING');
    await k.c.nats.restart();
    for (const id of accepted) expect((await k.final(id, 60_000)).status).toBe('SHIPPED');
    await eventually(async () => (await k.books()).ok, { what: 'books balanced', timeoutMs: 20_000 }).catch(() => {});
    expect((await k.books()).problems).toEqual([]);
  });
});

describe('service crash', () => {
  it('kill -9 mid-burst: every accepted order ends SHIPPED or FAILED, and the books balance', async () => {
    const nats = await startTestNats();
    const db = await createTestDatabase();
    const sink = await startSmtpSink({ port: 0 });
    const gw = await startGatewaySimulator({ port: 0, seed: 3 });
    const sms = await startSmsSimulator({ port: 0, seed: 3 });
    cleanups.push(() => nats.stop(), () => db.drop(), () => sink.close(), () => gw.close(), () => sms.close());
    const env = { ...FAST_ENV, NATS_URL: nats.url, DATABASE_URL: db.url, SMTP_URL: sink.url, PAYMENT_GATEWAY_URL: gw.url, SMS_URL: sms.url, DB_POOL_MAX: '20' };
    let cluster = await spawnCluster(env);
    cleanups.push(() => cluster.kill9());

    const skus = [uid('CRASH-A'), uid('CRASH-B')];
    const stock: Record<string, { start: number }> = {};
    for (const [i, sku] of skus.entries()) {
      const n = i === 0 ? 400 : 60;
      // Ready means provisioned; the services may still be mounting (503 until then).
      await eventually(async () => (await fetch(`${cluster.url}/api/products`, { method: 'POST', headers: { 'content-type': 'application/json', ...await cluster.authHeaders() }, body: JSON.stringify({ sku, name: sku, priceCents: 321, currency: 'USD', stock: n }) })).status === 201, { what: `product ${sku}` });
      stock[sku] = { start: n };
    }

    const auth = await cluster.authHeaders();
    const attempted: string[] = [];
    const accepted = new Set<string>();
    let killed = false;
    const send = async (i: number) => {
      const orderId = uid('K');
      attempted.push(orderId);
      try {
        const r = await fetch(`${cluster.url}/api/orders`, {
          method: 'POST', headers: { 'content-type': 'application/json', ...auth },
          body: JSON.stringify({ orderId, email: 'k@example.com', phone: '+15550001111', paymentToken: i % 7 === 0 ? 'tok_declined' : 'tok_visa', items: [{ sku: skus[i % 2], quantity: 1 + (i % 2) }] }),
        });
        if (r.status === 202) accepted.add((await r.json()).id);
      } catch { /* the process died under this request */ }
    };
    // 8 clients send 400 orders; the process is killed once 150 were accepted.
    let next = 0;
    await Promise.all([
      ...Array.from({ length: 8 }, async () => { while (next < 400 && !killed) await send(next++); }),
      (async () => {
        await eventually(() => accepted.size >= 150, { timeoutMs: 60_000, what: '150 accepted', intervalMs: 5 });
        killed = true;
        await cluster.kill9();
      })(),
    ]);
    expect(accepted.size).toBeGreaterThanOrEqual(150);

    cluster = await spawnCluster(env);
    // An order may have committed while its 202 was lost in the kill: it counts too.
    for (const orderId of attempted) {
      const r = await fetch(`${cluster.url}/api/orders?orderId=${orderId}`, { headers: auth });
      if (r.status === 200) accepted.add((await r.json()).id);
    }
    const ids = [...accepted];
    await eventually(async () => {
      const statuses = await Promise.all(ids.map(async (id) => (await (await fetch(`${cluster.url}/api/orders/${id}`, { headers: auth })).json()).status));
      return statuses.every((s) => s === 'SHIPPED' || s === 'FAILED');
    }, { timeoutMs: 90_000, intervalMs: 500, what: 'every accepted order SHIPPED or FAILED' });
    const input = {
      baseUrl: cluster.url, orders: ids, stock, netCharged: (ref: string) => gw.sim.netCharged(ref), token: async () => auth.authorization!.slice(7),
      mailIds: () => sink.messages().map((m) => m.messageId), smsBodies: () => sms.sim.messages().map((m) => m.body),
      // The mails in flight at the kill may go out twice with one Message-ID (books.ts says why).
      allowSameMessageIdResends: true,
    };
    await eventually(async () => (await checkBooks(input)).ok, { timeoutMs: 20_000, what: 'books balanced' }).catch(() => {});
    const books = await checkBooks(input);
    expect(books.problems).toEqual([]);
    expect(books.counts.shipped).toBeGreaterThan(0);
    expect(books.counts.byReason.PAYMENT_DECLINED).toBeGreaterThan(0);
    // At most the mails in flight at the kill (NOTIFY_CONCURRENCY per consumer).
    expect(books.counts.mailResends).toBeLessThanOrEqual(16);
  });
});
