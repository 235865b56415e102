// Tracing (tracing.ts): export by OTLP when the environment names an endpoint, off
// otherwise; the trace rides in outbox rows and NATS headers, and the delivery core
// continues it, one message or a batch at a time.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { context, SpanKind, trace } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startTestCluster, type TestCluster, eventually } from '../testing/index.ts';
import { startConsumer, type RunningConsumer } from './delivery.ts';
import { ConfigError } from './errors.ts';
import { createLogger } from './log.ts';
import { enqueue } from './outbox.ts';
import { createTracing, otlpTracesUrl, summarize, withTrace } from './tracing.ts';

/** A stand-in OTLP receiver: records each POST's path, content type and body. */
async function receiver(): Promise<{ url: string; posts: { path: string; type: string; tenant?: string; body: Buffer }[]; close(): Promise<void> }> {
  const posts: { path: string; type: string; tenant?: string; body: Buffer }[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts.push({ path: req.url ?? '', type: String(req.headers['content-type']), tenant: req.headers['x-tenant'] as string | undefined, body: Buffer.concat(chunks) });
      res.writeHead(200, { 'content-type': String(req.headers['content-type']) }).end(req.headers['content-type'] === 'application/json' ? '{}' : '');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, posts, close: () => new Promise((r) => server.close(() => r())) };
}

describe('createTracing from the environment', () => {
  it('is off without an OTLP endpoint, or with OTEL_SDK_DISABLED', () => {
    expect(createTracing({ env: {}, service: 's' }).on).toBe(false);
    expect(createTracing({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_SDK_DISABLED: 'true' }, service: 's' }).on).toBe(false);
  });

  it('finds the traces URL as the OTLP spec says', () => {
    expect(otlpTracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' })).toBe('http://collector:4318/v1/traces');
    expect(otlpTracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://b:9/x' })).toBe('http://b:9/x');
    expect(otlpTracesUrl({})).toBeUndefined();
  });

  it('refuses a protocol or sampler it does not support, at boot', () => {
    expect(() => createTracing({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, service: 's' })).toThrow(ConfigError);
    expect(() => createTracing({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '2' }, service: 's' })).toThrow(ConfigError);
  });

  it('posts OTLP http/json to the endpoint, with the service name and headers', async () => {
    const r = await receiver();
    const tracing = createTracing({
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: r.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_HEADERS: 'x-tenant=acme' },
      service: 'orderflow-orders',
    });
    try {
      expect(tracing.on).toBe(true);
      await tracing.span('exported span', { attributes: { 'orderflow.test': 1 } }, async () => {});
      await tracing.flush();
      await eventually(() => r.posts.length > 0, { what: 'an OTLP post' });
      const post = r.posts[0]!;
      expect(post.path).toBe('/v1/traces');
      expect(post.type).toBe('application/json');
      expect(post.tenant).toBe('acme');
      const body = JSON.parse(post.body.toString());
      const rs = body.resourceSpans[0];
      expect(rs.resource.attributes).toContainEqual({ key: 'service.name', value: { stringValue: 'orderflow-orders' } });
      expect(rs.scopeSpans[0].spans.map((s: { name: string }) => s.name)).toEqual(['exported span']);
      expect(rs.scopeSpans[0].spans[0].traceId).toMatch(/^[0-9a-f]{32}$/);
    } finally {
      await tracing.shutdown();
      await r.close();
    }
  });

  it('posts http/protobuf by default, honouring OTEL_SERVICE_NAME', async () => {
    const r = await receiver();
    const tracing = createTracing({ env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${r.url}/custom`, OTEL_SERVICE_NAME: 'named-by-env' }, service: 'orderflow-all' });
    try {
      await tracing.span('proto span', {}, async () => {});
      await tracing.flush();
      await eventually(() => r.posts.length > 0, { what: 'an OTLP post' });
      expect(r.posts[0]).toMatchObject({ path: '/custom', type: 'application/x-protobuf' });
      // Protobuf strings are stored as they are: the names can be found in the bytes.
      expect(r.posts[0]!.body.includes('named-by-env')).toBe(true);
      expect(r.posts[0]!.body.includes('proto span')).toBe(true);
    } finally {
      await tracing.shutdown();
      await r.close();
    }
  });
});

describe('summarize', () => {
  it('names the operation and the first table, never a value', () => {
    expect(summarize("insert into kit.outbox (id) values ('secret@example.com')")).toEqual({ operation: 'INSERT', target: 'kit.outbox' });
    expect(summarize('  update saga.sagas s set doc = 1')).toEqual({ operation: 'UPDATE', target: 'saga.sagas' });
    expect(summarize('begin')).toEqual({ operation: 'BEGIN' });
  });
});

describe('the trace through the outbox, NATS and the delivery core', () => {
  const spans = new InMemorySpanExporter();
  let c: TestCluster;
  const running: RunningConsumer[] = [];
  let streamNo = 0;
  beforeAll(async () => {
    c = await startTestCluster({ TARGET: 'admin' }, { spans });
  });
  afterAll(async () => {
    for (const r of running) await r.stop(1000);
    await c?.close();
  });

  const Job = z.object({ n: z.number() });
  async function queue() {
    const n = ++streamNo;
    const stream = `TRACE${n}`;
    await c.deps.nats.jsm.streams.add({ name: stream, subjects: [`trace${n}.>`], retention: 'workqueue' as never });
    await c.deps.nats.jsm.consumers.add(stream, { durable_name: 'w', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, max_deliver: 5 });
    // Where the handlers' events go (the runtime's relay publishes them): kept, to be read back.
    await c.deps.nats.jsm.streams.add({ name: `TRACENEXT${n}`, subjects: [`tracenext${n}.>`] });
    return { stream, subject: `trace${n}.job`, next: `tracenext${n}.evt`, nextStream: `TRACENEXT${n}` };
  }
  const publishWith = (subject: string, data: unknown, traceparent: string) => {
    const h = natsHeaders();
    h.set('traceparent', traceparent);
    return c.deps.nats.js.publish(subject, JSON.stringify(data), { headers: h });
  };
  const tp = (traceId: string, spanId: string) => `00-${traceId}-${spanId}-01`;
  /** The trace ids of the first `n` messages in `stream` (once there are `n`). */
  const tracesIn = async (stream: string, n: number): Promise<string[]> => (await eventually(async (): Promise<string[] | false> => {
    if ((await c.deps.nats.jsm.streams.info(stream)).state.messages < n) return false;
    return await Promise.all(Array.from({ length: n }, async (_, i) => (await c.deps.nats.jsm.streams.getMessage(stream, { seq: i + 1 }))!.header.get('traceparent')));
  }, { what: `${n} messages in ${stream}` })) as string[];

  it('enqueue writes the caller\'s trace into the row; the relay publishes it under a PRODUCER span of that trace', async () => {
    const q = await queue();
    let traceId = '';
    let spanId = '';
    await c.deps.tracing.span('caller', {}, async (span) => {
      traceId = span.spanContext().traceId;
      spanId = span.spanContext().spanId;
      await c.deps.orm.em.fork().transactional(async (em) => {
        const [id] = await enqueue(em, [{ subject: q.next, data: { n: 1 }, headers: { 'X-Request-Id': 'req-1' } }]);
        const [row] = await em.execute<{ headers: Record<string, string> }[]>('select headers from kit.outbox where id = ?', [id]);
        expect(row!.headers).toEqual({ 'X-Request-Id': 'req-1', traceparent: tp(traceId, spanId) });
      });
    });
    const [published] = await tracesIn(q.nextStream, 1);
    const producer = (await eventually(() => spans.getFinishedSpans().find((s) => s.kind === SpanKind.PRODUCER && s.attributes['messaging.destination.name'] === q.next), { what: 'the publish span' }))!;
    expect(producer.spanContext().traceId).toBe(traceId);
    expect(producer.parentSpanContext?.spanId).toBe(spanId);
    expect(published).toBe(tp(traceId, producer.spanContext().spanId));
    expect((await c.deps.nats.jsm.streams.getMessage(q.nextStream, { seq: 1 }))!.header.get('X-Request-Id')).toBe('req-1');
  });

  it('a consumer continues the message\'s trace: its span, its SQL, its outbox rows and its log lines', async () => {
    const q = await queue();
    let out = '';
    const log = createLogger({ level: 'info', destination: { write(s: string) { out += s; return true; } } as unknown as NodeJS.WritableStream });
    const traceId = '11111111111111111111111111111111';
    const parent = '2222222222222222';
    running.push(await startConsumer({
      stream: q.stream, consumer: 'w', js: c.deps.nats.js, orm: c.deps.orm, log, errors: c.deps.errors, schema: Job, tracing: c.deps.tracing, guard: 'inbox',
      handle: async (_j, ctx) => {
        ctx.log.info('handling');
        await ctx.tx((em) => enqueue(em, [{ subject: q.next, data: {} }]));
      },
    }));
    await publishWith(q.subject, { n: 1 }, tp(traceId, parent));
    const consumer = (await eventually(() => spans.getFinishedSpans().find((s) => s.kind === SpanKind.CONSUMER && s.attributes['messaging.destination.name'] === q.subject), { what: 'the delivery span' }))!;
    expect(consumer.spanContext().traceId).toBe(traceId);
    expect(consumer.parentSpanContext?.spanId).toBe(parent);
    expect(consumer.attributes).toMatchObject({ 'messaging.system': 'nats', 'messaging.consumer.group.name': 'w', 'messaging.nats.stream': q.stream, 'messaging.nats.deliveries': 1, 'orderflow.outcome': 'ok' });
    const sql = spans.getFinishedSpans().filter((s) => s.parentSpanContext?.spanId === consumer.spanContext().spanId).map((s) => s.name);
    expect(sql).toEqual(expect.arrayContaining(['BEGIN', 'INSERT kit.inbox', 'INSERT kit.outbox', 'COMMIT']));
    const [next] = await tracesIn(q.nextStream, 1);
    expect(next!.split('-')[1]).toBe(traceId);
    const line = out.trim().split('\n').map((l) => JSON.parse(l)).find((l) => l.msg === 'handling');
    expect(line).toMatchObject({ trace_id: traceId, span_id: consumer.spanContext().spanId });
  });

  it('a batch of several keeps each item\'s trace: the batch span links them, item.carry and withTrace carry each one\'s own', async () => {
    const q = await queue();
    const traceIds = ['a'.repeat(32), 'b'.repeat(32), 'c'.repeat(32)];
    for (const [i, t] of traceIds.entries()) await publishWith(q.subject, { n: i }, tp(t, '3'.repeat(16)));
    const inside: string[] = [];
    running.push(await startConsumer({
      stream: q.stream, consumer: 'w', js: c.deps.nats.js, orm: c.deps.orm, log: c.deps.log, errors: c.deps.errors, schema: Job, tracing: c.deps.tracing,
      guard: 'inbox', batch: { size: 10, lingerMs: 50 },
      handle: async (items, em) => {
        for (const i of items) await withTrace(i.trace, async () => { inside.push(trace.getSpanContext(context.active())!.traceId); });
        await enqueue(em, items.map((i) => ({ subject: q.next, data: i.data, headers: i.carry })));
      },
    }));
    const batch = (await eventually(() => spans.getFinishedSpans().find((s) => s.name === 'process w batch' && s.attributes['messaging.nats.stream'] === q.stream), { what: 'the batch span' }))!;
    expect(batch.links.map((l) => l.context.traceId).sort()).toEqual(traceIds);
    expect(inside.sort()).toEqual(traceIds);
    const carried = await tracesIn(q.nextStream, 3);
    expect(carried.map((t) => t!.split('-')[1]).sort()).toEqual(traceIds);
  });
});
