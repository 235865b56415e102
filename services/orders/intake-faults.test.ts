// Faults of the order-to-mail flow: kill -9 during a burst, NATS unreachable, SIGTERM.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, eventually, startTestNats, type TestNats, spawnCluster, startTestCluster } from '../testing/index.ts';
import { startSmtpSink, type SmtpSink } from '../simulators/smtp-sink.ts';

let nats: TestNats;
let sink: SmtpSink;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
beforeAll(async () => {
  nats = await startTestNats();
  sink = await startSmtpSink({ port: 0 });
  db = await createTestDatabase();
});
afterAll(async () => { await sink?.close(); await nats?.stop(); await db?.drop(); });

const body = (orderId: string) => JSON.stringify({ orderId, email: 'burst@example.com', paymentToken: 'tok_visa', items: [{ sku: 'SKU-1', quantity: 1 }] });
const receivedIds = () => sink.messages().filter((m) => m.messageId.endsWith('.received@orderflow>')).map((m) => m.messageId);

describe('order intake under faults', () => {
  it('kill -9 during a burst: every order that got a 202 is stored and mailed, none twice', async () => {
    const env = { NATS_URL: nats.url, DATABASE_URL: db.url, SMTP_URL: sink.url, TARGET: 'orders,notifications,admin' };
    const first = await spawnCluster(env);
    const auth = await first.authHeaders();
    const accepted = new Map<string, string>();
    let stop = false;
    const client = async (n: number) => {
      for (let i = 0; !stop; i++) {
        const orderId = `K-${n}-${i}`;
        try {
          const res = await fetch(`${first.url}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: body(orderId) });
          if (res.status === 202) accepted.set(orderId, (await res.json()).id);
        } catch { return; } // the process died under us
      }
    };
    const clients = Array.from({ length: 16 }, (_, n) => client(n));
    await eventually(() => accepted.size >= 300, { what: '300 accepted orders' });
    await first.kill9();
    stop = true;
    await Promise.all(clients);
    const second = await spawnCluster(env);
    try {
      for (const [orderId, id] of accepted) {
        const res = await fetch(`${second.url}/api/orders/${id}`, { headers: auth });
        expect(res.status, orderId).toBe(200);
      }
      const want = new Set([...accepted.values()].map((id) => `<${id}.received@orderflow>`));
      await eventually(() => [...want].every((m) => receivedIds().includes(m)), { timeoutMs: 60_000, what: 'every accepted order mailed' });
      const counts = new Map<string, number>();
      for (const m of receivedIds()) counts.set(m, (counts.get(m) ?? 0) + 1);
      // SMTP has no idempotency: a kill between the server's 250 and our COMMIT can only
      // resend the mails that were in that window at the kill (at most one per mail in
      // flight, NOTIFY_CONCURRENCY = 8), each with its original Message-ID.
      const resent = [...counts.values()].filter((n) => n > 1);
      if (resent.length) console.warn(`kill -9 resent ${resent.length} mail(s) caught between SMTP 250 and COMMIT`);
      expect(resent.every((n) => n === 2)).toBe(true);
      expect(resent.length).toBeLessThanOrEqual(8);
    } finally {
      expect(await second.sigterm()).toBe(0);
    }
  });

  it('NATS unreachable for a while: orders are still accepted and mailed once it is back', async () => {
    const ownNats = await startTestNats();
    const ownDb = await createTestDatabase();
    const c = await startTestCluster({ TARGET: 'orders,notifications' }, { nats: ownNats, databaseUrl: ownDb.url, sink });
    try {
      await ownNats.kill();
      const ready = await eventually(async () => { const r = await c.get('/readyz'); return r.status === 503 ? r : undefined; }, { what: '/readyz 503' });
      expect(ready!.body.missing).toContain('nats');
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) {
        const res = await c.post('/api/orders', JSON.parse(body(`OUT-${i}-${Date.now()}`)));
        expect(res.status).toBe(202);
        ids.push(res.body.id);
      }
      const held = await c.deps.orm.em.fork().execute<{ n: string }[]>('select count(*) as n from kit.outbox');
      expect(Number(held[0]!.n)).toBe(20);
      await new Promise((r) => setTimeout(r, 1500));
      await ownNats.restart();
      await eventually(async () => (await c.get('/readyz')).status === 200, { what: '/readyz 200 again' });
      await eventually(() => ids.every((id) => receivedIds().includes(`<${id}.received@orderflow>`)), { timeoutMs: 60_000, what: 'mails after NATS returns' });
      for (const id of ids) expect(receivedIds().filter((m) => m === `<${id}.received@orderflow>`)).toHaveLength(1);
    } finally {
      await c.close();
      await ownNats.stop();
      await ownDb.drop();
    }
  });

  it('SIGTERM drains and exits 0', async () => {
    const env = { NATS_URL: nats.url, DATABASE_URL: db.url, SMTP_URL: sink.url };
    const p = await spawnCluster(env);
    const res = await fetch(`${p.url}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json', ...await p.authHeaders() }, body: body(`T-${Date.now()}`) });
    expect(res.status).toBe(202);
    expect(await p.sigterm()).toBe(0);
  });

  it('SIGTERM with NATS unreachable still finishes and exits 0', async () => {
    const own = await startTestNats();
    try {
      const p = await spawnCluster({ NATS_URL: own.url, DATABASE_URL: db.url, SMTP_URL: sink.url });
      await own.kill();
      const code = await Promise.race([p.sigterm(), new Promise((r) => setTimeout(() => r('timeout'), 60_000))]);
      if (code !== 0) console.error(p.output());
      expect(code).toBe(0);
    } finally {
      await own.stop();
    }
  });
});
