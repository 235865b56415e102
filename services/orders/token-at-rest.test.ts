// An upgrade from a release that stored payment tokens in clear: on the first start of
// this one, orders seals what its rows hold and the saga forgets the tokens it no longer
// needs, while a saga still waiting for its charge keeps its token (no order is lost).
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSealer } from '../kit/index.ts';
import { createTestDatabase, startTestNats, type TestNats, startTestCluster } from '../testing/index.ts';

const key = randomBytes(32);
// Both targets: each process migrates only the schemas of its own targets.
const env = { TARGET: 'orders,saga', PAYMENT_TOKEN_KEY: key.toString('base64') };
const clear = () => `tok_visa_SECRET${randomBytes(8).toString('hex')}`;

let nats: TestNats;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: pg.Client;

beforeAll(async () => {
  nats = await startTestNats();
  db = await createTestDatabase();
  sql = new pg.Client({ connectionString: db.url });
}, 30_000);
afterAll(async () => {
  await sql?.end().catch(() => {});
  await db?.drop().catch(() => {});
  await nats?.stop();
});

describe('payment tokens stored in clear before sealing', () => {
  it('are sealed in orders and dropped from finished sagas on the next start; a saga waiting to charge keeps its token', async () => {
    const first = await startTestCluster(env, { nats, databaseUrl: db.url });
    const fresh = await first.post('/api/orders', { orderId: `N-${randomUUID()}`, email: 'a@example.com', paymentToken: 'tok_visa', items: [{ sku: 'S-1', quantity: 1 }] });
    expect(fresh.status).toBe(202);
    await first.close();

    // What the previous release left: rows in clear, and the migration not yet applied.
    await sql.connect();
    const tokens = Array.from({ length: 3 }, clear);
    const ids = tokens.map(() => randomUUID());
    for (const [i, t] of tokens.entries()) {
      await sql.query(`insert into orders.orders (id, order_id, email, payment_token, items, status, history, created_at, updated_at)
        values ($1, $2, 'a@example.com', $3, '[]', 'PENDING', '[]', now(), now())`, [ids[i], `L-${ids[i]}`, t]);
    }
    const noToken = randomUUID();
    await sql.query(`insert into orders.orders (id, order_id, email, payment_token, items, status, history, created_at, updated_at)
      values ($1, $2, 'a@example.com', null, '[]', 'PENDING', '[]', now(), now())`, [noToken, `L-${noToken}`]);
    const sealedBefore = (await sql.query('select payment_token from orders.orders where id = $1', [fresh.body.id])).rows[0].payment_token;
    const sagaDone = randomUUID();
    const sagaCharging = randomUUID();
    for (const [id, step, token] of [[sagaDone, 'DONE', tokens[0]], [sagaCharging, 'CHARGING', tokens[1]]] as const) {
      await sql.query(`insert into saga.sagas (id, step, status, version, doc) values ($1, $2, 'PAID', 3, $3)`,
        [id, step, JSON.stringify({ id, step, paymentToken: token, paymentTokenSealed: null })]);
    }
    await sql.query(`delete from kit.mikro_orm_migrations where name = 'saga-20261201190400-drop-clear-payment-tokens'`);

    const second = await startTestCluster(env, { nats, databaseUrl: db.url });
    try {
      const rows = new Map((await sql.query('select id, payment_token from orders.orders')).rows.map((r) => [r.id, r.payment_token as string | null]));
      const sealer = createSealer([key]);
      for (const [i, id] of ids.entries()) {
        expect(rows.get(id)).toMatch(/^v1\./);
        expect(sealer.open(rows.get(id)!)).toBe(tokens[i]);
      }
      expect(rows.get(noToken)).toBeNull();
      // Sealed already: left as it was.
      expect(rows.get(fresh.body.id)).toBe(sealedBefore);

      const docs = new Map((await sql.query('select id, doc from saga.sagas')).rows.map((r) => [r.id, r.doc]));
      expect(docs.get(sagaDone)).not.toHaveProperty('paymentToken');
      expect(docs.get(sagaCharging)).toMatchObject({ paymentToken: tokens[1] });
    } finally {
      await second.close();
    }
  }, 90_000);
});
