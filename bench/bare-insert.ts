// The reference for bench:intake: a bare Hono route doing one INSERT through the same
// MikroORM pool settings, with nothing else (no validation, outbox, idempotency, logs).
import { randomUUID } from 'node:crypto';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { openOrm } from '../services/kit/db.ts';

const url = process.env.DATABASE_URL!;
const orm = await openOrm({ url, entities: [], migrations: [], poolMax: Number(process.env.DB_POOL_MAX ?? 20) });
await orm.em.getConnection().execute('create table if not exists bare_orders (id uuid primary key, order_id text unique not null, body jsonb not null, created_at timestamptz not null)');
const app = new Hono();
app.post('/api/orders', async (c) => {
  const body = await c.req.json();
  const id = randomUUID();
  await orm.em.fork().execute('insert into bare_orders (id, order_id, body, created_at) values (?, ?, ?::jsonb, now())', [id, body.orderId, JSON.stringify(body)]);
  return c.json({ id }, 202);
});
serve({ fetch: app.fetch, port: Number(process.env.PORT), hostname: '127.0.0.1' }, () => process.send?.('ready'));
