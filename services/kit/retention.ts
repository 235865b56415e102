// Retention of the kit's bookkeeping tables, which nothing else ever deletes from:
// - kit.inbox (consumer, msg_id): the exactly-once guard of inbox-guarded consumers
//   (delivery.ts). A row may go once its message can no longer come back to that consumer.
// - kit.idempotency_keys: the stored answers of HTTP Idempotency-Key requests
//   (http/idempotency.ts, and orders' and funding's intake statements).
//
// Every process runs a pruner (the kit's tables come with every process, and whichever
// process writes them may be the only one left running): each pass deletes expired rows
// in small batches, each batch its own short statement whose rows are chosen with
// `FOR UPDATE SKIP LOCKED`, so N replicas pruning at once take disjoint rows, never wait
// on each other or on a request, and count each deleted row once.
import { ConfigError } from './errors.ts';
import type { MikroORM } from './db.ts';
import type { Logger } from './log.ts';
import type { StreamSpec, ConsumerSpec } from './provision.ts';

export const RETENTION_TABLES = ['inbox', 'idempotency_keys'] as const;
export type RetentionTable = (typeof RETENTION_TABLES)[number];

const HOUR_MS = 3_600_000;

/**
 * A 'running' idempotency row is a lease: the request holding it renews its created_at
 * every leaseMs/3 (seconds) while it runs (http/idempotency.ts). One not renewed for an
 * hour belongs to a process that died mid-request; anything younger may be in progress and
 * is never deleted, whatever the retention (a request is never that long: SHUTDOWN_TIMEOUT_MS
 * and the HTTP timeouts end it well before).
 */
export const ABANDONED_CLAIM_MS = HOUR_MS;

export type RetentionOptions = {
  orm: MikroORM;
  log: Logger;
  /** kit.inbox rows processed longer ago than this go; 0 keeps them for ever. */
  inboxMs: number;
  /** Answered Idempotency-Keys older than this go (CONTRACTS.md names no lifetime; 24 h is Stripe's). */
  idempotencyMs: number;
  /** Rows per delete statement: small, so each statement holds its row locks for milliseconds. */
  batchSize?: number;
  /** At most this many batches per table per pass; a larger backlog is finished by the next passes. */
  maxBatches?: number;
  onPruned?: (table: RetentionTable, n: number) => void;
};

/** One bounded batch: the rows of `where` (oldest first is not needed, any expired row will do), locked and deleted in one statement. */
async function deleteBatch(orm: MikroORM, table: RetentionTable, where: string, params: unknown[], limit: number): Promise<number> {
  // ctid = any(array(...)) makes the outer delete a TID scan of exactly the rows the
  // subquery locked (`ctid in (select ...)` may plan as a join over the whole table).
  // SKIP LOCKED: a row another pruner (or a request renewing its claim) holds is left to it.
  const [row] = await orm.em.fork().execute<{ n: string }[]>(
    `with gone as (
       delete from kit.${table} where ctid = any(array(select ctid from kit.${table} where ${where} limit ? for update skip locked))
       returning 1)
     select count(*) as n from gone`, [...params, limit]);
  return Number(row?.n ?? 0);
}

/**
 * Delete what has expired now, batch by batch. Returns the rows deleted per table.
 * `await pruneOnce({ orm, log, inboxMs: 45 * 86_400_000, idempotencyMs: 86_400_000 })`
 */
export async function pruneOnce(o: RetentionOptions): Promise<Record<RetentionTable, number>> {
  const batchSize = o.batchSize ?? 1000;
  const maxBatches = o.maxBatches ?? 100;
  const secs = (ms: number) => ms / 1000;
  const rules: { table: RetentionTable; where: string; params: unknown[] }[] = [];
  if (o.inboxMs > 0) rules.push({ table: 'inbox', where: 'processed_at < now() - make_interval(secs => ?)', params: [secs(o.inboxMs)] });
  // Answered keys after the retention; claims still 'running' only once abandoned (see ABANDONED_CLAIM_MS),
  // so a key whose request is in progress stays even with a retention shorter than the request.
  rules.push({
    table: 'idempotency_keys',
    where: `((state = 'done' and created_at < now() - make_interval(secs => ?)) or (state = 'running' and created_at < now() - make_interval(secs => ?)))`,
    params: [secs(o.idempotencyMs), secs(Math.max(o.idempotencyMs, ABANDONED_CLAIM_MS))],
  });
  const out: Record<RetentionTable, number> = { inbox: 0, idempotency_keys: 0 };
  for (const { table, where, params } of rules) {
    for (let i = 0; i < maxBatches; i++) {
      const n = await deleteBatch(o.orm, table, where, params, batchSize);
      if (n) { out[table] += n; o.onPruned?.(table, n); }
      if (n < batchSize) break;
    }
  }
  return out;
}

export type Pruner = { stop(): Promise<void> };

/**
 * Prune every `intervalMs`, the first pass after a random part of it (replicas that start
 * together do not pass together; they would be safe, only wasteful).
 * `const pruner = startPruner({ orm, log, inboxMs, idempotencyMs, intervalMs: 300_000 })`
 */
export function startPruner(o: RetentionOptions & { intervalMs: number }): Pruner {
  let stopped = false;
  let current: Promise<unknown> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(() => {
      current = pruneOnce(o)
        .then((n) => { if (n.inbox || n.idempotency_keys) o.log.info({ pruned: n }, 'retention: expired rows deleted'); })
        .catch((err) => o.log.warn({ err: String(err) }, 'retention pass failed; retrying at the next one'))
        .finally(() => schedule(o.intervalMs));
    }, ms);
    timer.unref();
  };
  schedule(Math.round(Math.random() * o.intervalMs));
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await current;
    },
  };
}

/**
 * How long a message may still come back to a consumer after it was first handled, from the
 * stream definitions (streams/). Per consumer, max_deliver x (ack_wait or backoff) would
 * be tighter, but it bounds nothing for max_deliver -1 (lending-items), nor for a handler
 * that defers with a delayed nak; the stream's max_age bounds every redelivery, since the
 * server deletes the message then (work-queue streams delete it at the ack anyway, but an
 * ack can be lost after the inbox row committed: that redelivery is what the row is for).
 * - `redeliveryMs`: the longest max_age of a stream that has consumers (7 days today).
 * - `redriveMs`: that plus the DLQ's max_age (30 days). A DLQ redrive (dlq.ts) republishes
 *   an entry to its original subject, up to that long after the original was published, and
 *   keeps its inbox identity: every other consumer of a shared stream (ORDERS: saga and
 *   notifications) that handled it the first time sees it again and must still hold its row.
 * Infinity where a stream keeps messages for ever (max_age 0).
 */
export function inboxHorizon(specs: { streams: StreamSpec[]; consumers: ConsumerSpec[] }, dlqStream = 'DLQ'): { redeliveryMs: number; redriveMs: number } {
  const ageMs = (s: StreamSpec | undefined) => {
    const ns = Number(s?.config.max_age ?? 0);
    return ns > 0 ? ns / 1e6 : Infinity;
  };
  const consumed = new Set(specs.consumers.map((c) => c.stream));
  const redeliveryMs = Math.max(0, ...specs.streams.filter((s) => consumed.has(s.config.name)).map(ageMs));
  const dlq = specs.streams.find((s) => s.config.name === dlqStream);
  return { redeliveryMs, redriveMs: redeliveryMs + (dlq ? ageMs(dlq) : 0) };
}

/**
 * Check the inbox retention against the horizon: below the redelivery horizon a lost ack's
 * redelivery could run a handler twice, so start-up refuses it; below the redrive horizon
 * only a late DLQ redrive could, so it is allowed with a warning (an operator trading that
 * for table size). 0 (never prune) is always allowed.
 */
export function checkInboxRetention(inboxMs: number, horizon: { redeliveryMs: number; redriveMs: number }, log: Logger): void {
  if (inboxMs === 0) return;
  const h = (ms: number) => (Number.isFinite(ms) ? `${Math.ceil(ms / HOUR_MS)} h` : 'for ever (a stream with max_age 0)');
  if (inboxMs < horizon.redeliveryMs) {
    throw new ConfigError(`INBOX_RETENTION_HOURS=${inboxMs / HOUR_MS} is shorter than the longest a stream keeps a message (${h(horizon.redeliveryMs)}): a redelivered message could run twice; set at least that, or 0 to never prune`);
  }
  if (inboxMs < horizon.redriveMs) {
    log.warn({ inboxRetentionHours: inboxMs / HOUR_MS, redriveHorizon: h(horizon.redriveMs) }, 'inbox retention is shorter than the DLQ redrive horizon: redriving a DLQ entry older than the retention may run it again on the other consumers of its stream');
  }
}
