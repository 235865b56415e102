import { AckPolicy, DeliverPolicy, jetstream, type JsMsg } from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startTestCluster, type TestCluster, eventually } from '../testing/index.ts';
import { createDlqAdmin, errorKey } from './dlq.ts';
import { InvalidMessageError, settle, startConsumer, type RunningConsumer, type SettleContext } from './delivery.ts';
import { NonRetryableError, RetryLaterError } from './errors.ts';

let c: TestCluster;
const running: RunningConsumer[] = [];
beforeAll(async () => {
  c = await startTestCluster({ TARGET: 'admin' });
  await c.deps.orm.em.fork().execute('create table if not exists public.applied (key text, n int)');
});
afterAll(async () => { for (const r of running) await r.stop(1000); await c?.close(); });

const Job = z.object({ key: z.string(), n: z.number() });
type Job = z.infer<typeof Job>;
let streamNo = 0;

async function queue(o: { maxDeliver?: number; ackWaitMs?: number; durable?: string } = {}) {
  const stream = `CORE${++streamNo}`;
  await c.deps.nats.jsm.streams.add({ name: stream, subjects: [`core${streamNo}.>`], retention: 'workqueue' as never, allow_direct: true });
  await c.deps.nats.jsm.consumers.add(stream, {
    durable_name: o.durable ?? 'w', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All,
    max_deliver: o.maxDeliver ?? 10, ack_wait: (o.ackWaitMs ?? 30_000) * 1e6,
  });
  return { stream, subject: `core${streamNo}.job` };
}
const common = () => ({ consumer: 'w', js: c.deps.nats.js, log: c.deps.log, metrics: c.deps.metrics, errors: c.deps.errors, schema: Job });
const keep = (r: RunningConsumer) => { running.push(r); return r; };
const publish = (subject: string, data: unknown, id?: string) => {
  const h = headers();
  if (id) h.set('Orderflow-Msg-Id', id);
  return c.deps.nats.js.publish(subject, typeof data === 'string' ? data : JSON.stringify(data), { headers: h });
};
const drained = (stream: string) => eventually(async () => (await c.deps.nats.jsm.streams.info(stream)).state.messages === 0, { what: `${stream} drained` });
const inboxRows = async (consumerStream: string) =>
  (await c.deps.orm.em.fork().execute<{ n: string }[]>('select count(*) as n from kit.inbox where msg_id like ?', [`${consumerStream}-%`]))[0]!.n;
const outcomes = async (consumer: string) => {
  const m = await c.deps.metrics.handlerOutcomes.get();
  return Object.fromEntries(m.values.filter((v) => v.labels.consumer === consumer).map((v) => [v.labels.outcome, v.value]));
};

/** One message taken by hand from a stream's consumer, for settle() to decide on. */
async function take(stream: string): Promise<JsMsg> {
  const consumer = await c.deps.nats.js.consumers.get(stream, 'w');
  const m = await consumer.next({ expires: 2000 });
  if (!m) throw new Error('no message');
  return m;
}

describe('delivery core: guard state', () => {
  it('runs a message published twice twice, writes no inbox row, and needs no orm', async () => {
    const q = await queue();
    const ran: number[] = [];
    let emError = '';
    keep(await startConsumer<Job>({ ...common(), stream: q.stream, guard: 'state', handle: async (j, ctx) => {
      ran.push(j.n);
      try { void ctx.em; } catch (err) { emError = (err as Error).message; }
    } }));
    await publish(q.subject, { key: 'a', n: 1 }, `${q.stream}-1`);
    await publish(q.subject, { key: 'a', n: 1 }, `${q.stream}-1`);
    await drained(q.stream);
    expect(ran).toEqual([1, 1]);
    expect(emError).toMatch(/without orm/);
    expect(await inboxRows(q.stream)).toBe('0');
  });

  it('in batch mode hands a batch to one call, outside an inbox, and commits no inbox rows', async () => {
    const q = await queue();
    const calls: number[] = [];
    keep(await startConsumer<Job>({ ...common(), orm: c.deps.orm, stream: q.stream, guard: 'state', batch: { size: 64, lingerMs: 50 }, handle: async (items, em) => {
      calls.push(items.length);
      for (const i of items) await em.execute('insert into public.applied (key, n) values (?, ?)', [q.stream, i.data.n]);
    } }));
    await Promise.all(Array.from({ length: 10 }, (_, n) => publish(q.subject, { key: `k${n}`, n }, `${q.stream}-${n % 5}`)));
    await drained(q.stream);
    // Ten messages, five logical ids: without an inbox every one is applied.
    const rows = await c.deps.orm.em.fork().execute<{ n: number }[]>('select n from public.applied where key = ?', [q.stream]);
    expect(rows).toHaveLength(10);
    expect(calls.reduce((a, b) => a + b, 0)).toBe(10);
    expect(calls.length).toBeLessThan(10);
    expect(await inboxRows(q.stream)).toBe('0');
  });

  it('in batch mode takes what arrived while a batch ran into the next one, not a batch per linger window', async () => {
    const q = await queue();
    const calls: number[] = [];
    keep(await startConsumer<Job>({ ...common(), orm: c.deps.orm, stream: q.stream, guard: 'state', batch: { size: 64, lingerMs: 2 }, handle: async (items) => {
      calls.push(items.length);
      await new Promise((r) => setTimeout(r, 150));
    } }));
    // One message starts a slow batch; 24 more trickle in, one every 15 ms, while batches run.
    // Grouped when each batch starts, they fill a few batches; grouped per 2 ms linger
    // window (the old flush), each came alone: ~25 batches of one, 150 ms each.
    for (let n = 0; n < 25; n++) {
      await publish(q.subject, { key: `k${n}`, n });
      await new Promise((r) => setTimeout(r, 15));
    }
    await drained(q.stream);
    await eventually(() => calls.reduce((a, b) => a + b, 0) === 25, { what: 'every message handled' });
    expect(calls.length).toBeLessThanOrEqual(8);
  });

  it('settles a failed batch as a whole when split is off: one handler call per delivery, not one per message', async () => {
    const q = await queue({ maxDeliver: 2 });
    const calls: number[] = [];
    keep(await startConsumer<Job>({ ...common(), orm: c.deps.orm, stream: q.stream, guard: 'state', split: false, retry: { baseMs: 20 }, batch: { size: 64, lingerMs: 100 }, handle: async (items) => {
      calls.push(items.length);
      throw new Error('database down');
    } }));
    await Promise.all(Array.from({ length: 4 }, (_, n) => publish(q.subject, { key: 'k', n })));
    const dlq = createDlqAdmin(c.deps.nats);
    await eventually(async () => (await dlq.list({ stream: q.stream })).length === 4, { what: 'four DLQ entries' });
    expect(calls.reduce((a, b) => a + b, 0)).toBe(8);
    expect((await dlq.list({ stream: q.stream })).every((e) => e.error === 'database down')).toBe(true);
  });
});

describe('delivery core: concurrency and keys', () => {
  it('reads a concurrency function at every pull: raising it lets more in without a slot freeing', async () => {
    const q = await queue();
    let limit = 1;
    let inHand = 0;
    let most = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    let done = 0;
    const w = keep(await startConsumer<Job>({ ...common(), stream: q.stream, guard: 'state', concurrency: () => limit, handle: async () => {
      inHand++;
      most = Math.max(most, inHand);
      await gate;
      inHand--;
      done++;
    } }));
    for (let n = 0; n < 6; n++) await publish(q.subject, { key: `k${n}`, n });
    await eventually(() => inHand === 1, { what: 'one in hand' });
    await new Promise((r) => setTimeout(r, 600));
    expect(most).toBe(1);
    limit = 4;
    await eventually(() => inHand === 4, { what: 'four in hand' });
    expect(w.inflight()).toBe(4);
    release();
    await eventually(() => done === 6, { what: 'all done' });
    expect(most).toBe(4);
  });

  it("defers a second message of a key in hand (sameKey 'defer') instead of queueing it", async () => {
    const q = await queue();
    const attempts: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    keep(await startConsumer<Job>({ ...common(), stream: q.stream, guard: 'state', key: (j) => j.key, sameKey: 'defer', handle: async (j, ctx) => {
      attempts.push(ctx.attempt);
      if (j.n === 1) await gate;
    } }));
    await publish(q.subject, { key: 'same', n: 1 });
    await eventually(() => attempts.length === 1, { what: 'first in hand' });
    await publish(q.subject, { key: 'same', n: 2 });
    // The second one was pulled and nak'ed; it comes back once the first is done.
    await eventually(async () => (await c.deps.nats.jsm.consumers.info(q.stream, 'w')).num_redelivered >= 1, { what: 'second deferred' });
    expect(attempts).toEqual([1]);
    release();
    // A deferred message sits between its nak and its redelivery for up to a second, when
    // the consumer may show nothing pending: wait for it to run, then for the stream to drain.
    await eventually(() => attempts.length >= 2, { what: 'the deferred message runs after the first' });
    await drained(q.stream);
    expect(attempts[0]).toBe(1);
    expect(attempts[attempts.length - 1]).toBeGreaterThan(1);
  });
});

describe('delivery core: paused', () => {
  it('holds a message already in hand while paused, keeps it alive with working(), and runs it on its first delivery', async () => {
    // ack_wait 6 s, held 8.5 s: without heartbeats the server would redeliver it.
    const q = await queue({ ackWaitMs: 6000, maxDeliver: 5 });
    let open = false;
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const seen: { n: number; attempt: number }[] = [];
    keep(await startConsumer<Job>({ ...common(), orm: c.deps.orm, stream: q.stream, guard: 'inbox', key: (j) => j.key, paused: () => open, handle: async (j, ctx) => {
      seen.push({ n: j.n, attempt: ctx.attempt });
      if (j.n === 1) await gate;
    } }));
    await publish(q.subject, { key: 'k', n: 1 });
    await publish(q.subject, { key: 'k', n: 2 });
    // The second is in hand too, queued behind the first (same key).
    await eventually(async () => (await c.deps.nats.jsm.consumers.info(q.stream, 'w')).num_ack_pending === 2, { what: 'both in hand' });
    open = true;
    release();
    await new Promise((r) => setTimeout(r, 7000));
    // Another replica pulling now would get the second message again had its ack_wait run out.
    const other = await c.deps.nats.js.consumers.get(q.stream, 'w');
    const got: JsMsg[] = [];
    for await (const m of await other.fetch({ max_messages: 1, expires: 1500 })) got.push(m);
    expect(got.map((m) => m.info.deliveryCount)).toEqual([]);
    expect(seen).toEqual([{ n: 1, attempt: 1 }]);
    const info = await c.deps.nats.jsm.consumers.info(q.stream, 'w');
    expect(info.num_ack_pending).toBe(1);
    expect(info.num_redelivered).toBe(0);
    open = false;
    await eventually(() => seen.length === 2, { what: 'second run after resume' });
    expect(seen[1]).toEqual({ n: 2, attempt: 1 });
  }, 20_000);
});

describe('settle', () => {
  const ctxFor = (stream: string, over: Partial<SettleContext> = {}): SettleContext => ({
    js: c.deps.nats.js, stream, consumer: 'w', retry: { baseMs: 300, jitter: 0 }, log: c.deps.log, errors: c.deps.errors, ...over,
  });

  it('dead-letters NonRetryableError as non-retryable and InvalidMessageError as invalid-message, then terms', async () => {
    const q = await queue();
    await publish(q.subject, { key: 'a', n: 1 });
    await publish(q.subject, { key: 'a', n: 2 });
    expect(await settle(await take(q.stream), new NonRetryableError('card expired'), ctxFor(q.stream))).toBe('dlq');
    expect(await settle(await take(q.stream), new InvalidMessageError('schema: n: expected number'), ctxFor(q.stream))).toBe('dlq');
    const dlq = createDlqAdmin(c.deps.nats);
    const entries = await eventually(async () => { const l = await dlq.list({ stream: q.stream }); return l.length === 2 ? l : undefined; }, { what: 'two entries' });
    expect(entries!.map((e) => [e.reason, e.error, e.data])).toEqual([
      ['non-retryable', 'card expired', { key: 'a', n: 1 }],
      ['invalid-message', 'schema: n: expected number', { key: 'a', n: 2 }],
    ]);
    await drained(q.stream);
  });

  it('naks RetryLaterError after its delay and a plain error after backoff(attempt), keeping the error for the DLQ mover', async () => {
    const q = await queue();
    await publish(q.subject, { key: 'a', n: 1 });
    const m1 = await take(q.stream);
    expect(await settle(m1, new RetryLaterError(200, 'rate limited'), ctxFor(q.stream))).toBe('deferred');
    expect((await c.deps.errors.get(errorKey(q.stream, m1.seq)))?.string()).toBe('rate limited');
    const m2 = await take(q.stream);
    expect([m2.seq, m2.info.deliveryCount]).toEqual([m1.seq, 2]);
    expect(await settle(m2, new Error('flaky'), ctxFor(q.stream))).toBe('retry');
    expect((await c.deps.errors.get(errorKey(q.stream, m1.seq)))?.string()).toBe('flaky');
    const m3 = await take(q.stream);
    expect([m3.seq, m3.info.deliveryCount]).toEqual([m1.seq, 3]);
    m3.ack();
  });

  it('naks (1 s) rather than losing a message whose DLQ copy cannot be published', async () => {
    const q = await queue();
    await publish(q.subject, { key: 'a', n: 1 });
    const closed = await connect({ servers: c.nats.url });
    const deadJs = jetstream(closed);
    await closed.close();
    const m = await take(q.stream);
    expect(await settle(m, new NonRetryableError('never'), ctxFor(q.stream, { js: deadJs }))).toBeNull();
    const again = await take(q.stream);
    expect([again.seq, again.info.deliveryCount]).toEqual([m.seq, 2]);
    again.ack();
    expect(await createDlqAdmin(c.deps.nats).list({ stream: q.stream })).toEqual([]);
  });

  it('counts the outcomes of a consumer under its name (dashboards query them)', async () => {
    const q = await queue({ maxDeliver: 3, durable: 'counted' });
    keep(await startConsumer<Job>({ ...common(), consumer: 'counted', stream: q.stream, guard: 'state', retry: { baseMs: 20 }, handle: async (j) => {
      if (j.n === 1) throw new NonRetryableError('no');
      if (j.n === 2) throw new RetryLaterError(20);
    } }));
    const before = await outcomes('counted');
    await publish(q.subject, { key: 'a', n: 1 });
    await publish(q.subject, { key: 'a', n: 2 });
    await publish(q.subject, { key: 'a', n: 3 });
    await publish(q.subject, 'not json');
    await eventually(async () => {
      const now = await outcomes('counted');
      const d = (k: string) => (now[k] ?? 0) - (before[k] ?? 0);
      return d('dlq') === 2 && d('ok') === 1 && d('deferred') >= 2;
    }, { what: 'outcomes counted' });
  });
});
