// Scrape-time metrics read from NATS (consumer state per durable of streams/, stream
// sizes, the DLQ per original stream and consumer) and Postgres (business counts of the
// schemas this process migrated; the connection pool). Each source is read at most once
// per `ttlMs` however many scrapes and gauges ask, a read is given up after `timeoutMs`,
// and a read that fails or times out serves the last good snapshot (up to `staleMs`) and
// counts in orderflow_collector_errors_total: a scrape never hangs on a slow server and
// never multiplies the load on it.
//
// Every replica exports the same NATS and business figures (they are cluster-wide, read
// from the same servers): dashboards and rules aggregate them with max by (...), not sum.
import type { JetStreamManager } from '@nats-io/jetstream';
import { Counter, Gauge } from 'prom-client';
import { poolUsage, type MikroORM } from './db.ts';
import { DLQ_STREAM } from './dlq.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import { readSpecs } from './provision.ts';

type Labels = Record<string, string>;
type Sample = { labels: Labels; value: number };
/** metric name -> samples */
type Snapshot = Map<string, Sample[]>;

export type CollectorOptions = {
  metrics: Metrics;
  jsm: JetStreamManager;
  orm: MikroORM;
  /** streams/ folder: the durables and streams to report. */
  streamsDir: string;
  /** Schemas this process migrated: business counts come only from these. */
  schemas: readonly string[];
  log: Logger;
  /** Give up on one read of a source after this long (default 2000 ms). */
  timeoutMs?: number;
  /** Serve a read this long before reading again (default 5000 ms). */
  ttlMs?: number;
  /** After a failed read, keep serving the last good one this long (default 60000 ms). */
  staleMs?: number;
};

/** A business count: the SQL returns rows of labels plus `n`. Run only where `schema` is migrated. */
type BusinessQuery = { schema: string; metric: string; sql: string };

// Cheap by construction: lending items come from the per-order counters the order's status
// follows (one row per order, not 50,000); the rest group small status columns.
const BUSINESS: readonly BusinessQuery[] = [
  { schema: 'orders', metric: 'orderflow_orders', sql: 'select status, count(*)::float8 as n from orders.orders group by status' },
  { schema: 'lending', metric: 'orderflow_lending_orders', sql: 'select status, count(*)::float8 as n from lending.orders group by status' },
  {
    schema: 'lending', metric: 'orderflow_lending_items',
    sql: `select s.state, coalesce(sum(case s.state when 'pending' then o.pending when 'reserved' then o.reserved when 'invested' then o.invested else o.failed end), 0)::float8 as n
            from (values ('pending'), ('reserved'), ('invested'), ('failed')) as s(state) left join lending.orders o on true group by s.state`,
  },
  { schema: 'funding', metric: 'orderflow_funding_applications', sql: 'select status, count(*)::float8 as n from funding.applications group by status' },
  { schema: 'funding', metric: 'orderflow_funding_payouts', sql: 'select state, count(*)::float8 as n from funding.payouts group by state' },
  { schema: 'funding', metric: 'orderflow_funding_payout_amount_minor', sql: 'select state, currency, sum(amount_minor)::float8 as n from funding.payouts group by state, currency' },
];

const GAUGES: readonly { name: string; help: string; labels: string[]; source: 'nats' | 'postgres' | 'pool' }[] = [
  { name: 'orderflow_consumer_pending', help: 'Messages of the stream the durable has not delivered yet (num_pending)', labels: ['stream', 'consumer'], source: 'nats' },
  { name: 'orderflow_consumer_ack_pending', help: 'Messages delivered to the durable and not acknowledged yet (num_ack_pending)', labels: ['stream', 'consumer'], source: 'nats' },
  { name: 'orderflow_consumer_redelivered', help: 'Messages the durable has delivered more than once and not acknowledged (num_redelivered)', labels: ['stream', 'consumer'], source: 'nats' },
  { name: 'orderflow_consumer_waiting', help: 'Pull requests waiting at the durable (num_waiting)', labels: ['stream', 'consumer'], source: 'nats' },
  { name: 'orderflow_stream_messages', help: 'Messages in the stream', labels: ['stream'], source: 'nats' },
  { name: 'orderflow_dlq_messages', help: 'DLQ entries per original stream and consumer', labels: ['stream', 'consumer'], source: 'nats' },
  { name: 'orderflow_orders', help: 'Orders by status (final: SHIPPED, FAILED)', labels: ['status'], source: 'postgres' },
  { name: 'orderflow_lending_orders', help: 'Lending investor orders by status', labels: ['status'], source: 'postgres' },
  { name: 'orderflow_lending_items', help: 'Lending items by state (pending, reserved, invested, failed)', labels: ['state'], source: 'postgres' },
  { name: 'orderflow_funding_applications', help: 'Funding applications by status', labels: ['status'], source: 'postgres' },
  { name: 'orderflow_funding_payouts', help: 'Funding payouts by state', labels: ['state'], source: 'postgres' },
  { name: 'orderflow_funding_payout_amount_minor', help: 'Sum of funding payouts in minor units, by state and currency', labels: ['state', 'currency'], source: 'postgres' },
  { name: 'orderflow_db_pool_connections', help: 'Postgres pool connections of this process by state (active, idle)', labels: ['state'], source: 'pool' },
  { name: 'orderflow_db_pool_waiting', help: 'Callers of this process waiting for a Postgres connection', labels: [], source: 'pool' },
  { name: 'orderflow_db_pool_max', help: 'Postgres pool size of this process (DB_POOL_MAX)', labels: [], source: 'pool' },
];

/** Bound `p` by `ms`; the timer never outlives it. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A reader of `load` shared by every caller: one read per `ttlMs`, bounded by `timeoutMs`, the last
 * good snapshot for `staleMs` after a failure. `const read = cachedSource(load, opts); const snap = await read()`
 */
export function cachedSource<T>(load: () => Promise<T>, opts: { ttlMs: number; timeoutMs: number; staleMs: number; onError(err: unknown): void }): () => Promise<T | undefined> {
  let last: { at: number; value: T } | undefined;
  let inflight: Promise<boolean> | undefined;
  return async () => {
    if (last && Date.now() - last.at < opts.ttlMs) return last.value;
    inflight ??= within(load(), opts.timeoutMs, 'metrics read')
      .then((value) => { last = { at: Date.now(), value }; return true; })
      .catch((err) => { opts.onError(err); return false; })
      .finally(() => { inflight = undefined; });
    if (await inflight) return last!.value;
    return last && Date.now() - last.at < opts.staleMs ? last.value : undefined;
  };
}

/** Register the NATS, Postgres and pool gauges on the process registry. `registerCollectors({ metrics, jsm, orm, streamsDir: STREAMS_DIR, schemas: plan.schemas, log })` */
export function registerCollectors(o: CollectorOptions): void {
  const registry = o.metrics.registry;
  const timing = { ttlMs: o.ttlMs ?? 5000, timeoutMs: o.timeoutMs ?? 2000, staleMs: o.staleMs ?? 60_000 };
  const errors = new Counter({ name: 'orderflow_collector_errors_total', help: 'Scrape-time reads that failed or timed out, by source (nats, postgres, pool)', labelNames: ['source'] as const, registers: [registry] });
  const specs = readSpecs(o.streamsDir);
  const queries = BUSINESS.filter((q) => o.schemas.includes(q.schema));
  const onError = (source: string) => (err: unknown) => {
    errors.inc({ source });
    o.log.warn({ source, err: String(err) }, 'metrics collector read failed');
  };

  const readNats = async (): Promise<Snapshot> => {
    const snap: Snapshot = new Map(GAUGES.filter((g) => g.source === 'nats').map((g) => [g.name, []]));
    const add = (name: string, labels: Labels, value: number) => snap.get(name)!.push({ labels, value });
    await Promise.all([
      ...specs.consumers.map(async (c) => {
        // One durable missing (deleted by hand, not provisioned yet) must not hide the others.
        const info = await o.jsm.consumers.info(c.stream, c.config.durable_name).catch(() => undefined);
        if (!info) return;
        const labels = { stream: c.stream, consumer: c.config.durable_name };
        add('orderflow_consumer_pending', labels, info.num_pending);
        add('orderflow_consumer_ack_pending', labels, info.num_ack_pending);
        add('orderflow_consumer_redelivered', labels, info.num_redelivered);
        add('orderflow_consumer_waiting', labels, info.num_waiting);
      }),
      ...specs.streams.map(async (s) => {
        const info = await o.jsm.streams.info(s.config.name).catch(() => undefined);
        if (info) add('orderflow_stream_messages', { stream: s.config.name }, info.state.messages);
      }),
      (async () => {
        // DLQ subjects are dlq.<stream>.<consumer>: per-subject counts say where entries came from.
        const info = await o.jsm.streams.info(DLQ_STREAM, { subjects_filter: 'dlq.>' });
        for (const [subject, n] of Object.entries(info.state.subjects ?? {})) {
          const [, stream = '', consumer = ''] = subject.split('.');
          add('orderflow_dlq_messages', { stream, consumer }, n);
        }
      })(),
    ]);
    return snap;
  };

  const readPostgres = async (): Promise<Snapshot> => {
    const snap: Snapshot = new Map(queries.map((q) => [q.metric, []]));
    if (!queries.length) return snap;
    await o.orm.em.fork().transactional(async (em) => {
      // The server stops a query that outlives the scrape's budget rather than letting it pile up.
      await em.execute(`set local statement_timeout = ${Math.max(1, timing.timeoutMs)}`);
      for (const q of queries) {
        for (const row of await em.execute<Record<string, unknown>[]>(q.sql)) {
          const { n, ...labels } = row;
          snap.get(q.metric)!.push({ labels: Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, String(v ?? '')])), value: Number(n) });
        }
      }
    });
    return snap;
  };

  const readPool = async (): Promise<Snapshot> => {
    const u = await poolUsage(o.orm);
    return new Map([
      ['orderflow_db_pool_connections', [{ labels: { state: 'active' }, value: u.active }, { labels: { state: 'idle' }, value: u.idle }]],
      ['orderflow_db_pool_waiting', [{ labels: {}, value: u.waiting }]],
      ['orderflow_db_pool_max', [{ labels: {}, value: u.max }]],
    ]);
  };

  const sources = {
    nats: cachedSource(readNats, { ...timing, onError: onError('nats') }),
    postgres: cachedSource(readPostgres, { ...timing, onError: onError('postgres') }),
    // Local counters of the pool: always fresh.
    pool: cachedSource(readPool, { ...timing, ttlMs: 0, onError: onError('pool') }),
  };

  for (const g of GAUGES) {
    if (g.source === 'postgres' && !queries.some((q) => q.metric === g.name)) continue;
    new Gauge({
      name: g.name, help: g.help, labelNames: g.labels, registers: [registry],
      async collect() {
        const snap = await sources[g.source]();
        this.reset();
        for (const s of snap?.get(g.name) ?? []) this.set(s.labels, s.value);
      },
    });
  }
}
