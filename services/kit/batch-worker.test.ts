import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream';
import { headers } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createDlqAdmin } from './dlq.ts';
import { NonRetryableError } from './errors.ts';
import { eventually, startTestCluster, type TestCluster } from '../testing/index.ts';
import { startBatchWorker, type BatchItem, type BatchWorker } from './batch-worker.ts';

let c: TestCluster;
const workers: BatchWorker[] = [];
beforeAll(async () => {
  c = await startTestCluster({ TARGET: 'admin' });
  await c.deps.orm.em.fork().execute('create table if not exists public.seen (key text, n int, at timestamptz default clock_timestamp())');
});
afterAll(async () => { for (const w of workers) await w.stop(); await c?.close(); });

const Job = z.object({ key: z.string(), n: z.number() });
type Job = z.infer<typeof Job>;
let streamNo = 0;
async function queue(maxDeliver: number) {
  const stream = `BATCH${++streamNo}`;
  await c.deps.nats.jsm.streams.add({ name: stream, subjects: [`batch${streamNo}.>`], retention: 'workqueue' as never, allow_direct: true });
  await c.deps.nats.jsm.consumers.add(stream, { durable_name: 'w', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, max_deliver: maxDeliver, ack_wait: 30e9 });
  return { stream, subject: `batch${streamNo}.job` };
}
const run = async (stream: string, handle: (items: BatchItem<Job>[], em: any) => Promise<void>) => {
  const w = await startBatchWorker({ stream, consumer: 'w', js: c.deps.nats.js, orm: c.deps.orm, errors: c.deps.errors, log: c.deps.log, schema: Job, key: (j) => j.key, batch: 16, retry: { baseMs: 20, maxMs: 50 }, handle });
  workers.push(w);
};
const publish = (subject: string, data: unknown, id?: string) => {
  const h = headers();
  if (id) h.set('Orderflow-Msg-Id', id);
  return c.deps.nats.js.publish(subject, typeof data === 'string' ? data : JSON.stringify(data), { headers: h });
};
const seen = async (key: string) => (await c.deps.orm.em.fork().execute<{ n: number }[]>('select n from public.seen where key = ? order by at', [key])).map((r) => r.n);
const record = async (items: BatchItem<Job>[], em: any) => {
  for (const i of items) await em.execute('insert into public.seen (key, n) values (?, ?)', [i.data.key, i.data.n]);
};

describe('batch worker', () => {
  it('applies messages once, keeps per-key order, and skips a redelivered id', async () => {
    const q = await queue(5);
    await run(q.stream, record);
    for (let n = 0; n < 30; n++) await publish(q.subject, { key: `k${n % 3}`, n }, `id-${q.stream}-${n}`);
    await publish(q.subject, { key: 'k0', n: 0 }, `id-${q.stream}-0`); // same logical id again
    await eventually(async () => (await seen('k0')).length + (await seen('k1')).length + (await seen('k2')).length === 30, { what: '30 applied' });
    await new Promise((r) => setTimeout(r, 300));
    expect(await seen('k0')).toEqual([0, 3, 6, 9, 12, 15, 18, 21, 24, 27]);
    expect(await seen('k1')).toEqual([1, 4, 7, 10, 13, 16, 19, 22, 25, 28]);
  });

  it('isolates a failing message: the rest of its batch commits, it retries alone and reaches the DLQ', async () => {
    const q = await queue(3);
    await run(q.stream, async (items, em) => {
      if (items.some((i) => i.data.key === 'poison')) throw new Error('poison in the batch');
      await record(items, em);
    });
    await publish(q.subject, 'not json');
    for (let n = 0; n < 5; n++) await publish(q.subject, { key: n === 2 ? 'poison' : `ok-${q.stream}-${n}`, n });
    await eventually(async () => (await Promise.all([0, 1, 3, 4].map((n) => seen(`ok-${q.stream}-${n}`)))).every((s) => s.length === 1), { what: 'the others applied' });
    const dlq = createDlqAdmin(c.deps.nats);
    await eventually(async () => (await dlq.list({ stream: q.stream })).length === 2, { what: 'two DLQ entries' });
    const entries = await dlq.list({ stream: q.stream });
    expect(entries.map((e) => e.reason).sort()).toEqual(['invalid-message', 'max-deliveries']);
    expect(entries.find((e) => e.reason === 'max-deliveries')!.error).toBe('poison in the batch');
  });

  it('sends NonRetryableError to the DLQ at once', async () => {
    const q = await queue(5);
    await run(q.stream, async (items) => { if (items.length) throw new NonRetryableError('never'); });
    await publish(q.subject, { key: 'x', n: 1 });
    const dlq = createDlqAdmin(c.deps.nats);
    const e = await eventually(async () => (await dlq.list({ stream: q.stream }))[0], { what: 'DLQ entry' });
    expect(e).toMatchObject({ reason: 'non-retryable', error: 'never', deliveries: 1 });
  });
});
