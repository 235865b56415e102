import { Writable } from 'node:stream';
import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { externals, registry, verifier } from '../main.ts';
import { createDlqAdmin, redactSecrets } from './dlq.ts';
import { NonRetryableError } from './errors.ts';
import { createLogger } from './log.ts';
import { startRuntime, type Cluster } from './runtime.ts';
import { createTestDatabase, eventually, startTestNats, type TestNats } from '../testing/index.ts';
import { startWorker, type Worker } from './worker.ts';

// The runtime's own logger (the DLQ mover's) and the workers' write here, at debug level.
let logged = '';
const sink = new Writable({ write(chunk, _enc, done) { logged += String(chunk); done(); } });
const log = createLogger({ level: 'debug', destination: sink });

let nats: TestNats;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let c: Cluster;
const workers: Worker[] = [];
beforeAll(async () => {
  nats = await startTestNats();
  db = await createTestDatabase();
  c = await startRuntime({ env: { NATS_URL: nats.url, DATABASE_URL: db.url, PORT: '0', HOST: '127.0.0.1', TARGET: 'admin', LOG_LEVEL: 'debug' }, registry, externals, verifier, log });
});
afterAll(async () => {
  for (const w of workers) await w.stop(1000);
  await c?.stop();
  await db?.drop().catch(() => {});
  await nats?.stop();
});

let streamNo = 0;
async function queue(maxDeliver: number) {
  const stream = `SECRET${++streamNo}`;
  await c.deps.nats.jsm.streams.add({ name: stream, subjects: [`secret${streamNo}.>`], retention: 'workqueue' as never, allow_direct: true });
  await c.deps.nats.jsm.consumers.add(stream, { durable_name: 'w', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, max_deliver: maxDeliver, ack_wait: 30e9 });
  return { stream, subject: `secret${streamNo}.charge` };
}

describe('redactSecrets', () => {
  it('cuts the values of secret fields out of a text, also from a payload that is not valid JSON', () => {
    const payload = '{"orderUuid":"o-1","paymentToken":"tok_abc123","nested":{"source":"tok_\\u0078yz9"}}';
    expect(redactSecrets('declined tok_abc123 and tok_xyz9 for o-1', payload)).toBe('declined [redacted] and [redacted] for o-1');
    expect(redactSecrets('bad: "paymentToken":"tok_abc123", oops', '{"paymentToken":"tok_abc123", oops')).toBe('bad: "paymentToken":"[redacted]", oops');
    expect(redactSecrets('nothing secret here', payload)).toBe('nothing secret here');
  });
});

describe('DLQ and payment tokens', () => {
  it('never logs a paymentToken or source in clear, nor stores it in a DLQ entry error, on any way into the DLQ', async () => {
    const token = 'tok_live_S3CRET_4242';
    const source = 'tok_src_PRIVATE_77';
    const Charge = z.object({ orderUuid: z.string(), paymentToken: z.string(), source: z.string() });
    const dlq = createDlqAdmin(c.deps.nats);

    // A handler that quotes its input in its error, given up at once (non-retryable) ...
    const a = await queue(5);
    workers.push(await startWorker({
      stream: a.stream, consumer: 'w', schema: Charge, inbox: false,
      js: c.deps.nats.js, orm: c.deps.orm, errors: c.deps.errors, log, metrics: c.deps.metrics,
      handle: async (m) => { throw new NonRetryableError(`gateway refused ${m.paymentToken} / ${m.source}`); },
    }));
    // ... or failing until max_deliver runs out (the worker logs each retry, the mover the move) ...
    const b = await queue(2);
    workers.push(await startWorker({
      stream: b.stream, consumer: 'w', schema: Charge, inbox: false, retry: { baseMs: 10 },
      js: c.deps.nats.js, orm: c.deps.orm, errors: c.deps.errors, log, metrics: c.deps.metrics,
      handle: async (m) => { throw new Error(`timeout charging ${JSON.stringify(m)}`); },
    }));
    const msg = JSON.stringify({ orderUuid: 'o-1', paymentToken: token, source });
    await c.deps.nats.js.publish(a.subject, msg);
    await c.deps.nats.js.publish(b.subject, msg);
    // ... or not even valid JSON (the parser's message quotes the text).
    await c.deps.nats.js.publish(a.subject, `{"orderUuid":"o-2","paymentToken":"${token}" "source":"${source}"}`);

    const entries = (await eventually(async () => {
      const l = [...await dlq.list({ stream: a.stream }), ...await dlq.list({ stream: b.stream })];
      return l.length === 3 ? l : undefined;
    }, { what: 'three DLQ entries' }))!;
    expect(entries.map((e) => e.reason).sort()).toEqual(['invalid-message', 'max-deliveries', 'non-retryable']);
    for (const e of entries) {
      expect(e.error).not.toContain(token);
      expect(e.error).not.toContain(source);
    }
    expect(entries.find((e) => e.reason === 'non-retryable')!.error).toBe('gateway refused [redacted] / [redacted]');
    await eventually(() => logged.includes('moved to DLQ after max deliveries'), { what: 'the mover log line' });
    // The lines were written (so the check below is not vacuous), and none holds a secret.
    expect(logged).toContain('sent to DLQ');
    expect(logged).toContain('handler failed; will retry');
    expect(logged).not.toContain(token);
    expect(logged).not.toContain(source);
  });
});

describe('DLQ ids', () => {
  it('are digits only: 18.0, +18, 0x12 and 18e0 are not entry 18', async () => {
    // Ids are rejected before NATS is asked, so no connection is needed.
    const dlq = createDlqAdmin({ js: null as never, jsm: null as never });
    for (const id of ['18.0', '+18', '0x12', '18e0', ' 18', '018', '99999999999999999999']) {
      expect(await dlq.get(id)).toBeNull();
      expect(await dlq.remove(id)).toBe(false);
      expect(await dlq.redrive(id)).toBeNull();
    }
  });
});
