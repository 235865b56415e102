import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream';
import { headers } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startTestCluster, type TestCluster, eventually } from '../testing/index.ts';
import { createDlqAdmin } from './dlq.ts';
import { NonRetryableError, RetryLaterError } from './errors.ts';
import { backoff, startWorker, type Worker } from './worker.ts';

let c: TestCluster;
const workers: Worker[] = [];
beforeAll(async () => { c = await startTestCluster({ TARGET: 'admin' }); });
afterAll(async () => { for (const w of workers) await w.stop(1000); await c?.close(); });

const Job = z.object({ key: z.string(), n: z.number() });
let streamNo = 0;

/** A fresh work-queue stream with one consumer, as streams/ would declare it. */
async function queue(maxDeliver: number) {
  const stream = `TEST${++streamNo}`;
  await c.deps.nats.jsm.streams.add({ name: stream, subjects: [`test${streamNo}.>`], retention: 'workqueue' as never, allow_direct: true });
  await c.deps.nats.jsm.consumers.add(stream, { durable_name: 'w', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, max_deliver: maxDeliver, ack_wait: 30e9 });
  return { stream, subject: `test${streamNo}.job` };
}
const run = async <T>(o: Omit<Parameters<typeof startWorker<T>>[0], 'js' | 'orm' | 'errors' | 'log' | 'consumer'>) => {
  const w = await startWorker({ ...o, consumer: 'w', js: c.deps.nats.js, orm: c.deps.orm, errors: c.deps.errors, log: c.deps.log, metrics: c.deps.metrics });
  workers.push(w);
  return w;
};
const publish = (subject: string, data: unknown, id?: string) => {
  const h = headers();
  if (id) h.set('Orderflow-Msg-Id', id);
  return c.deps.nats.js.publish(subject, JSON.stringify(data), { headers: h });
};

describe('backoff', () => {
  it('grows exponentially, caps, and jitters within bounds', () => {
    expect(backoff({ baseMs: 1000, jitter: 0 }, 1)).toBe(1000);
    expect(backoff({ baseMs: 1000, jitter: 0 }, 3)).toBe(4000);
    expect(backoff({ baseMs: 1000, maxMs: 5000, jitter: 0 }, 10)).toBe(5000);
    expect(backoff({ baseMs: 1000, jitter: 0.2 }, 1, () => 0)).toBe(800);
    expect(backoff({ baseMs: 1000, jitter: 0.2 }, 1, () => 1)).toBe(1200);
  });
});

describe('worker harness', () => {
  it('moves a message whose deliveries run out to the DLQ through the advisory path, with its last error', async () => {
    const q = await queue(3);
    let calls = 0;
    await run({ stream: q.stream, schema: Job, retry: { baseMs: 20 }, handle: async (j) => { calls++; throw new Error(`boom ${j.n} attempt ${calls}`); } });
    await publish(q.subject, { key: 'a', n: 1 });
    const dlq = createDlqAdmin(c.deps.nats);
    const e = await eventually(async () => (await dlq.list({ stream: q.stream }))[0], { what: 'DLQ entry' });
    expect(e).toMatchObject({ stream: q.stream, consumer: 'w', subject: q.subject, reason: 'max-deliveries', deliveries: 3, data: { key: 'a', n: 1 } });
    expect(e.error).toBe('boom 1 attempt 3');
    expect(calls).toBe(3);
    // The original is gone from the work queue.
    await eventually(async () => (await c.deps.nats.jsm.streams.info(q.stream)).state.messages === 0, { what: 'original deleted' });
  });

  it('sends NonRetryableError and schema failures straight to the DLQ and terms the original', async () => {
    const q = await queue(5);
    let calls = 0;
    await run({ stream: q.stream, schema: Job, handle: async () => { calls++; throw new NonRetryableError('card expired'); } });
    await publish(q.subject, { key: 'b', n: 2 });
    await publish(q.subject, { key: 'b', n: 'not a number' });
    const dlq = createDlqAdmin(c.deps.nats);
    const entries = await eventually(async () => { const l = await dlq.list({ stream: q.stream }); return l.length === 2 ? l : undefined; }, { what: 'two entries' });
    const byReason = Object.fromEntries(entries!.map((e) => [e.reason, e]));
    expect(byReason['non-retryable']!.error).toBe('card expired');
    expect(byReason['invalid-message']!.error).toMatch(/schema: n:/);
    expect(calls).toBe(1);
    await eventually(async () => (await c.deps.nats.jsm.streams.info(q.stream)).state.messages === 0, { what: 'originals termed' });
  });

  it('retries transient errors with a delay and honours RetryLaterError', async () => {
    const q = await queue(10);
    const seen: number[] = [];
    await run({ stream: q.stream, schema: Job, retry: { baseMs: 50, jitter: 0 }, handle: async (_j, ctx) => {
      seen.push(ctx.attempt);
      if (ctx.attempt === 1) throw new Error('flaky');
      if (ctx.attempt === 2) throw new RetryLaterError(100);
    } });
    await publish(q.subject, { key: 'c', n: 3 });
    await eventually(() => seen.length === 3, { what: 'three attempts' });
    expect(seen).toEqual([1, 2, 3]);
  });

  it('runs a message whose inbox row exists only once, even when published twice', async () => {
    const q = await queue(5);
    const ran: number[] = [];
    await run({ stream: q.stream, schema: Job, handle: async (j, ctx) => { await ctx.tx(async () => { ran.push(j.n); }); } });
    await publish(q.subject, { key: 'd', n: 4 }, 'same-logical-id');
    await publish(q.subject, { key: 'd', n: 4 }, 'same-logical-id');
    await eventually(async () => (await c.deps.nats.jsm.streams.info(q.stream)).state.messages === 0, { what: 'both acked' });
    expect(ran).toEqual([4]);
  });

  it('without an inbox (a handler idempotent by itself) runs a message published twice twice', async () => {
    const q = await queue(5);
    const ran: number[] = [];
    await run({ stream: q.stream, schema: Job, inbox: false, handle: async (j, ctx) => { await ctx.tx(async () => { ran.push(j.n); }); } });
    await publish(q.subject, { key: 'f', n: 6 }, 'no-inbox-id');
    await publish(q.subject, { key: 'f', n: 6 }, 'no-inbox-id');
    await eventually(async () => (await c.deps.nats.jsm.streams.info(q.stream)).state.messages === 0, { what: 'both acked' });
    expect(ran).toEqual([6, 6]);
    const rows = await c.deps.orm.em.fork().execute('select 1 from kit.inbox where msg_id = ?', ['no-inbox-id']);
    expect(rows).toHaveLength(0);
  });

  it('rolls back the inbox row with the handler writes when the handler fails after tx', async () => {
    const q = await queue(5);
    let attempts = 0;
    await run({ stream: q.stream, schema: Job, retry: { baseMs: 20 }, handle: async (_j, ctx) => {
      attempts++;
      await ctx.tx(async () => { if (attempts === 1) throw new Error('write failed'); });
    } });
    await publish(q.subject, { key: 'e', n: 5 }, 'rollback-id');
    await eventually(() => attempts === 2, { what: 'second attempt' });
  });

  it('serializes messages of one key and runs different keys concurrently', async () => {
    const q = await queue(5);
    const active = new Map<string, number>();
    let maxPerKey = 0;
    let maxTotal = 0;
    let done = 0;
    await run({ stream: q.stream, schema: Job, concurrency: 8, key: (j) => j.key, handle: async (j) => {
      active.set(j.key, (active.get(j.key) ?? 0) + 1);
      maxPerKey = Math.max(maxPerKey, active.get(j.key)!);
      maxTotal = Math.max(maxTotal, [...active.values()].reduce((a, b) => a + b, 0));
      await new Promise((r) => setTimeout(r, 30));
      active.set(j.key, active.get(j.key)! - 1);
      done++;
    } });
    for (let i = 0; i < 24; i++) await publish(q.subject, { key: `k${i % 4}`, n: i });
    await eventually(() => done === 24, { what: 'all done' });
    expect(maxPerKey).toBe(1);
    expect(maxTotal).toBeGreaterThan(1);
    expect(maxTotal).toBeLessThanOrEqual(8);
  });

  it('pulls nothing while paused and holds a message in hand without burning deliveries', async () => {
    const q = await queue(2);
    let open = true;
    const attempts: number[] = [];
    await run({ stream: q.stream, schema: Job, paused: () => open, handle: async (_j, ctx) => { attempts.push(ctx.attempt); } });
    await publish(q.subject, { key: 'f', n: 6 });
    await new Promise((r) => setTimeout(r, 1500));
    expect(attempts).toEqual([]);
    const info = await c.deps.nats.jsm.consumers.info(q.stream, 'w');
    expect(info.num_ack_pending).toBe(0);
    open = false;
    await eventually(() => attempts.length === 1, { what: 'processed after resume' });
    expect(attempts).toEqual([1]);
  });
});
