// The scrape-time collectors read the real servers; a scrape must come back while one is down.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cachedSource, registerCollectors } from './collectors.ts';
import { migrate, openOrm, type MikroORM } from './db.ts';
import { createLogger } from './log.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { kitEntities, kitMigrations } from './migrations.ts';
import { connectNats, type Nats } from './nats.ts';
import { provision, STREAMS_DIR } from './provision.ts';
import { createTestDatabase, eventually, startTestNats, type TestNats } from '../testing/index.ts';

const log = createLogger({ level: 'silent' });

/** Value of one series in the registry's text output, undefined when absent. */
const valueOf = async (m: Metrics, name: string, labels: Record<string, string> = {}) => {
  const text = await m.registry.metrics();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
};

describe('cachedSource', () => {
  it('reads once per ttl however many callers ask at once', async () => {
    let reads = 0;
    const read = cachedSource(async () => ++reads, { ttlMs: 60_000, timeoutMs: 1000, staleMs: 60_000, onError: () => {} });
    expect(await Promise.all([read(), read(), read()])).toEqual([1, 1, 1]);
    expect(await read()).toBe(1);
    expect(reads).toBe(1);
  });

  it('gives up on a read that hangs, serving the last good value while it is fresh enough', async () => {
    let hang = false;
    const errors: unknown[] = [];
    const opts = { ttlMs: 0, timeoutMs: 50, onError: (e: unknown) => errors.push(e) };
    const load = async () => (hang ? await new Promise<number>(() => {}) : 7);
    const keeps = cachedSource(load, { ...opts, staleMs: 60_000 });
    const drops = cachedSource(load, { ...opts, staleMs: 0 });
    expect([await keeps(), await drops()]).toEqual([7, 7]);
    hang = true;
    expect([await keeps(), await drops()]).toEqual([7, undefined]);
    expect(errors.map(String)).toEqual([expect.stringContaining('took over 50 ms'), expect.stringContaining('took over 50 ms')]);
  });
});

describe('registerCollectors against NATS and Postgres', () => {
  let nats: TestNats;
  let conn: Nats;
  let orm: MikroORM;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let fresh: Metrics;
  let stale: Metrics;

  beforeAll(async () => {
    nats = await startTestNats();
    db = await createTestDatabase();
    conn = await connectNats(nats.url, log);
    await provision(conn.jsm, STREAMS_DIR, log);
    orm = await openOrm({ url: db.url, entities: kitEntities as never, migrations: kitMigrations, poolMax: 4 });
    await migrate(orm, log);
    // The orders table as far as the collector reads it; the orders service owns the real one.
    await orm.em.getConnection().execute(`create schema orders; create table orders.orders (status text not null);
      insert into orders.orders values ('SHIPPED'), ('SHIPPED'), ('FAILED'), ('PENDING')`);
    fresh = createMetrics();
    stale = createMetrics();
    const common = { jsm: conn.jsm, orm, streamsDir: STREAMS_DIR, schemas: ['kit', 'orders'], log, timeoutMs: 500 };
    registerCollectors({ ...common, metrics: fresh, ttlMs: 100, staleMs: 0 });
    registerCollectors({ ...common, metrics: stale, ttlMs: 100, staleMs: 600_000 });
  });
  afterAll(async () => {
    await conn?.nc.close().catch(() => {});
    await orm?.close().catch(() => {});
    await db?.drop();
    await nats?.stop();
  });

  it('reports each durable of streams/ with its pending, ack-pending and redelivered counts', async () => {
    for (let i = 0; i < 3; i++) await conn.js.publish('orders.created', JSON.stringify({ i }));
    await eventually(async () => (await valueOf(fresh, 'orderflow_consumer_pending', { stream: 'ORDERS', consumer: 'notifications' })) === 3, { what: 'pending 3' });
    expect(await valueOf(fresh, 'orderflow_consumer_pending', { stream: 'ORDERS', consumer: 'saga' })).toBe(3);
    expect(await valueOf(fresh, 'orderflow_consumer_ack_pending', { stream: 'ORDERS', consumer: 'saga' })).toBe(0);
    expect(await valueOf(fresh, 'orderflow_consumer_redelivered', { stream: 'PAYMENTS', consumer: 'payments' })).toBe(0);
    expect(await valueOf(fresh, 'orderflow_stream_messages', { stream: 'ORDERS' })).toBe(3);
  });

  it('counts DLQ entries per original stream and consumer', async () => {
    await conn.js.publish('dlq.PAYMENTS.payments', 'x');
    await conn.js.publish('dlq.PAYMENTS.payments', 'y');
    await conn.js.publish('dlq.ORDERS.notifications', 'z');
    await eventually(async () => (await valueOf(fresh, 'orderflow_dlq_messages', { stream: 'PAYMENTS', consumer: 'payments' })) === 2, { what: 'dlq 2' });
    expect(await valueOf(fresh, 'orderflow_dlq_messages', { stream: 'ORDERS', consumer: 'notifications' })).toBe(1);
  });

  it('counts the business rows of the schemas it was given, and the pool', async () => {
    expect(await valueOf(fresh, 'orderflow_orders', { status: 'SHIPPED' })).toBe(2);
    expect(await valueOf(fresh, 'orderflow_orders', { status: 'FAILED' })).toBe(1);
    // No lending or funding schema here: those gauges are not even registered.
    expect(await fresh.registry.metrics()).not.toContain('orderflow_lending_items');
    expect(await valueOf(fresh, 'orderflow_db_pool_max')).toBe(4);
    expect(await valueOf(fresh, 'orderflow_db_pool_waiting')).toBe(0);
    expect(await valueOf(fresh, 'orderflow_db_pool_connections', { state: 'idle' })).toBeGreaterThanOrEqual(0);
  });

  it('a scrape with NATS down comes back, counts the error, and keeps or drops the last snapshot as told', async () => {
    expect(await valueOf(stale, 'orderflow_consumer_pending', { stream: 'ORDERS', consumer: 'saga' })).toBe(3);
    await nats.kill();
    try {
      await eventually(async () => (await valueOf(fresh, 'orderflow_collector_errors_total', { source: 'nats' }) ?? 0) >= 1, { what: 'a nats error counted' });
      expect(await valueOf(fresh, 'orderflow_consumer_pending', { stream: 'ORDERS', consumer: 'saga' })).toBeUndefined();
      await eventually(async () => (await valueOf(stale, 'orderflow_collector_errors_total', { source: 'nats' }) ?? 0) >= 1, { what: 'a nats error counted' });
      expect(await valueOf(stale, 'orderflow_consumer_pending', { stream: 'ORDERS', consumer: 'saga' })).toBe(3);
      // Postgres is up: its figures are still read.
      expect(await valueOf(fresh, 'orderflow_orders', { status: 'SHIPPED' })).toBe(2);
    } finally {
      await nats.restart();
    }
  });
});
