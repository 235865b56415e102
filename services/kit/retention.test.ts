import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { migrate, openOrm, type MikroORM } from './db.ts';
import { ConfigError } from './errors.ts';
import { createApp, type App } from './http/app.ts';
import { idempotency } from './http/idempotency.ts';
import { createLogger } from './log.ts';
import { createMetrics } from './metrics.ts';
import { kitMigrations } from './migrations.ts';
import { readSpecs, STREAMS_DIR } from './provision.ts';
import { ABANDONED_CLAIM_MS, checkInboxRetention, inboxHorizon, pruneOnce, startPruner } from './retention.ts';
import { createTestDatabase, eventually } from '../testing/index.ts';

const log = createLogger({ level: 'silent' });
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let orm: MikroORM;

beforeAll(async () => {
  db = await createTestDatabase('orderflow_retention');
  orm = await openOrm({ url: db.url, entities: [], migrations: kitMigrations, poolMax: 8 });
  await migrate(orm, log);
});
afterAll(async () => {
  await orm?.close();
  await db?.drop();
});
beforeEach(async () => {
  await orm.em.fork().execute('truncate kit.inbox, kit.idempotency_keys');
});

const sql = async <T = unknown>(q: string, params: unknown[] = []) => await orm.em.fork().execute<T[]>(q, params);
/** `n` inbox rows for `consumer`, processed `ageMs` ago. */
const inbox = async (consumer: string, n: number, ageMs: number) =>
  await sql(`insert into kit.inbox (consumer, msg_id, processed_at) select ?, ? || g, now() - make_interval(secs => ?) from generate_series(1, ?) g`,
    [consumer, `${consumer}-${ageMs}-`, ageMs / 1000, n]);
/** `n` idempotency rows in `state`, created (or last renewed) `ageMs` ago. */
const keys = async (scope: string, state: 'done' | 'running', n: number, ageMs: number) =>
  await sql(`insert into kit.idempotency_keys (scope, principal, key, request_hash, state, response_status, response_body, created_at)
             select ?, '', 'k' || g, 'h', ?, case when ? = 'done' then 201 end, case when ? = 'done' then '{}' end, now() - make_interval(secs => ?)
             from generate_series(1, ?) g`, [scope, state, state, state, ageMs / 1000, n]);
const count = async (q: string, params: unknown[] = []) => Number((await sql<{ n: string }>(`select count(*) as n from ${q}`, params))[0]!.n);

describe('retention of kit.inbox and kit.idempotency_keys', () => {
  it('deletes inbox rows older than the retention and keeps the newer ones, in batches', async () => {
    await inbox('old', 250, 46 * DAY);
    await inbox('new', 40, 44 * DAY);
    await inbox('fresh', 10, 0);
    const pruned: number[] = [];
    const n = await pruneOnce({ orm, log, inboxMs: 45 * DAY, idempotencyMs: DAY, batchSize: 100, onPruned: (t, k) => { if (t === 'inbox') pruned.push(k); } });
    expect(n.inbox).toBe(250);
    // Three statements of at most 100 rows, not one of 250.
    expect(pruned).toEqual([100, 100, 50]);
    expect(await count(`kit.inbox where consumer = 'old'`)).toBe(0);
    expect(await count(`kit.inbox where consumer in ('new', 'fresh')`)).toBe(50);
  });

  it('keeps every inbox row with a retention of 0', async () => {
    await inbox('old', 20, 400 * DAY);
    expect((await pruneOnce({ orm, log, inboxMs: 0, idempotencyMs: DAY })).inbox).toBe(0);
    expect(await count('kit.inbox')).toBe(20);
  });

  it('stops a pass after maxBatches; the next pass goes on', async () => {
    await inbox('old', 30, 50 * DAY);
    expect((await pruneOnce({ orm, log, inboxMs: 45 * DAY, idempotencyMs: DAY, batchSize: 10, maxBatches: 2 })).inbox).toBe(20);
    expect((await pruneOnce({ orm, log, inboxMs: 45 * DAY, idempotencyMs: DAY, batchSize: 10, maxBatches: 2 })).inbox).toBe(10);
    expect(await count('kit.inbox')).toBe(0);
  });

  it('deletes answered keys older than the retention, keeps newer ones and claims that may be in progress', async () => {
    await keys('old-done', 'done', 30, 25 * HOUR);
    await keys('new-done', 'done', 7, 23 * HOUR);
    // A running claim renewed minutes ago: its request may be running, whatever the retention.
    await keys('live-claim', 'running', 3, 10 * 60_000);
    // Nobody renewed these for longer than ABANDONED_CLAIM_MS and the retention: their process died.
    await keys('dead-claim', 'running', 4, 25 * HOUR);
    const n = await pruneOnce({ orm, log, inboxMs: 0, idempotencyMs: DAY, batchSize: 8 });
    expect(n.idempotency_keys).toBe(34);
    expect(await count(`kit.idempotency_keys where scope in ('old-done', 'dead-claim')`)).toBe(0);
    expect(await count(`kit.idempotency_keys where scope = 'new-done'`)).toBe(7);
    expect(await count(`kit.idempotency_keys where scope = 'live-claim'`)).toBe(3);
  });

  it('never deletes a running claim renewed within the hour, even with a retention shorter than that', async () => {
    await keys('short', 'done', 5, 2 * HOUR);
    await keys('short-live', 'running', 2, ABANDONED_CLAIM_MS - 5 * 60_000);
    await keys('short-dead', 'running', 2, ABANDONED_CLAIM_MS + 5 * 60_000);
    const n = await pruneOnce({ orm, log, inboxMs: 0, idempotencyMs: 30 * 60_000 });
    expect(n.idempotency_keys).toBe(7);
    expect(await count(`kit.idempotency_keys where scope = 'short-live'`)).toBe(2);
  });

  it('a request in progress keeps its key through a pass that deletes every answered key, and is answered and replayed', async () => {
    const app: App = createApp({ log, metrics: createMetrics(), readiness: async () => [] });
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    let runs = 0;
    app.post('/slow', idempotency(orm, 'slow', { leaseMs: 600 }), async (c) => { runs++; await gate; return c.json({ ok: true }, 201); });
    await keys('answered', 'done', 3, 0);
    const send = () => app.request('/slow', { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'in-flight' }, body: '{}' });
    const first = send();
    await eventually(async () => (await count(`kit.idempotency_keys where scope = 'slow'`)) === 1, { what: 'claim written' });
    // A retention of 0: every answered key goes at once, the claim of the running request stays.
    const n = await pruneOnce({ orm, log, inboxMs: 0, idempotencyMs: 0 });
    expect(n.idempotency_keys).toBe(3);
    expect((await sql<{ state: string }>(`select state from kit.idempotency_keys where scope = 'slow'`)).map((r) => r.state)).toEqual(['running']);
    expect((await send()).status).toBe(409);
    release();
    expect((await first).status).toBe(201);
    const again = await send();
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(runs).toBe(1);
  });

  it('two pruners at once neither fail nor count a row twice', async () => {
    await inbox('race', 3000, 50 * DAY);
    await inbox('race-new', 100, 0);
    await keys('race-done', 'done', 2000, 2 * DAY);
    const totals = { inbox: 0, idempotency_keys: 0 };
    const opts = { orm, log, inboxMs: 45 * DAY, idempotencyMs: DAY, batchSize: 50, onPruned: (t: keyof typeof totals, k: number) => { totals[t] += k; } };
    const [a, b] = await Promise.all([pruneOnce(opts), pruneOnce(opts)]);
    expect(a!.inbox + b!.inbox).toBe(3000);
    expect(a!.idempotency_keys + b!.idempotency_keys).toBe(2000);
    expect(totals).toEqual({ inbox: 3000, idempotency_keys: 2000 });
    expect(await count('kit.inbox')).toBe(100);
    expect(await count('kit.idempotency_keys')).toBe(0);
  });

  it('startPruner prunes on its interval and stops', async () => {
    await inbox('timed', 5, 50 * DAY);
    const metrics = createMetrics();
    const pruner = startPruner({ orm, log, inboxMs: 45 * DAY, idempotencyMs: DAY, intervalMs: 50, onPruned: (table, n) => metrics.retentionPruned.inc({ table }, n) });
    try {
      await eventually(async () => (await count('kit.inbox')) === 0, { what: 'pruned by the timer' });
    } finally {
      await pruner.stop();
    }
    expect(await metrics.registry.getSingleMetricAsString('orderflow_retention_pruned_total')).toMatch(/orderflow_retention_pruned_total\{table="inbox"\} 5/);
  });
});

describe('inbox retention horizon', () => {
  const specs = readSpecs(STREAMS_DIR);

  it('is the longest max_age of a consumed stream, plus the DLQ\'s for a redrive', () => {
    const consumed = new Set(specs.consumers.map((c) => c.stream));
    const longest = Math.max(...specs.streams.filter((s) => consumed.has(s.config.name)).map((s) => Number(s.config.max_age) / 1e6));
    const dlq = Number(specs.streams.find((s) => s.config.name === 'DLQ')!.config.max_age) / 1e6;
    expect(inboxHorizon(specs)).toEqual({ redeliveryMs: longest, redriveMs: longest + dlq });
    // The default (kit/config.ts: 45 days) outlives both.
    expect(inboxHorizon(specs).redriveMs).toBeLessThanOrEqual(45 * DAY);
  });

  it('is for ever when a consumed stream keeps its messages for ever', () => {
    const forever = { ...specs, streams: specs.streams.map((s) => (s.config.name === 'ORDERS' ? { ...s, config: { ...s.config, max_age: 0 } } : s)) };
    expect(inboxHorizon(forever).redeliveryMs).toBe(Infinity);
    expect(() => checkInboxRetention(365 * DAY, inboxHorizon(forever), log)).toThrow(ConfigError);
    expect(() => checkInboxRetention(0, inboxHorizon(forever), log)).not.toThrow();
  });

  it('refuses a retention shorter than a stream keeps a message, warns below the redrive horizon', () => {
    const h = inboxHorizon(specs);
    expect(() => checkInboxRetention(h.redeliveryMs - HOUR, h, log)).toThrow(/INBOX_RETENTION_HOURS/);
    const warnings: unknown[] = [];
    const spy = { ...log, warn: (...args: unknown[]) => { warnings.push(args); } } as unknown as typeof log;
    checkInboxRetention(h.redeliveryMs, h, spy);
    expect(warnings).toHaveLength(1);
    checkInboxRetention(h.redriveMs, h, spy);
    expect(warnings).toHaveLength(1);
  });
});
