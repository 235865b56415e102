import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../log.ts';
import { createMetrics } from '../metrics.ts';
import { createTracing } from '../tracing.ts';
import { createApp } from './app.ts';

const spans = new InMemorySpanExporter();
const tracing = createTracing({ env: {}, service: 'orderflow-test', exporter: spans });
afterAll(async () => { await tracing.shutdown(); });

let out = '';
const sink = { write(chunk: string) { out += chunk; return true; } } as unknown as NodeJS.WritableStream;
const app = createApp({ log: createLogger({ level: 'info', destination: sink }), metrics: createMetrics(), readiness: async () => [], tracing });
app.get('/things/:id', async (c) => {
  c.get('log').info('handler line');
  return c.json({ ok: true });
});
app.get('/boom', () => { throw new Error('kaput'); });

const traceId = '0af7651916cd43dd8448eb211c80319c';
const parentId = 'b7ad6b7169203331';

describe('a span per request', () => {
  it('continues an incoming traceparent, names the route (not the path) and records the status', async () => {
    spans.reset();
    const res = await app.request('/things/42', { headers: { traceparent: `00-${traceId}-${parentId}-01`, tracestate: 'vendor=x' } });
    expect(res.status).toBe(200);
    const [s] = spans.getFinishedSpans();
    expect(s).toMatchObject({ name: 'GET /things/:id', kind: SpanKind.SERVER });
    expect(s!.spanContext().traceId).toBe(traceId);
    expect(s!.parentSpanContext?.spanId).toBe(parentId);
    expect(s!.spanContext().traceState?.get('vendor')).toBe('x');
    expect(s!.attributes).toMatchObject({ 'http.route': '/things/:id', 'http.response.status_code': 200, 'http.request.method': 'GET', 'url.path': '/things/42' });
  });

  it('starts a trace of its own without (or with a malformed) traceparent', async () => {
    spans.reset();
    await app.request('/things/1');
    await app.request('/things/2', { headers: { traceparent: '00-zz-yy-01' } });
    const got = spans.getFinishedSpans();
    expect(got).toHaveLength(2);
    for (const s of got) {
      expect(s.parentSpanContext).toBeUndefined();
      expect(s.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
    }
    expect(got[0]!.spanContext().traceId).not.toBe(got[1]!.spanContext().traceId);
  });

  it('marks a 500 as failed', async () => {
    spans.reset();
    const res = await app.request('/boom');
    expect(res.status).toBe(500);
    const [s] = spans.getFinishedSpans();
    expect(s!.status.code).toBe(SpanStatusCode.ERROR);
    expect(s!.attributes['http.response.status_code']).toBe(500);
  });

  it('puts the trace and span id on the request\'s log lines, the access line included', async () => {
    spans.reset();
    out = '';
    await app.request('/things/7', { headers: { traceparent: `00-${traceId}-${parentId}-01` } });
    const spanId = spans.getFinishedSpans()[0]!.spanContext().spanId;
    const lines = out.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.msg)).toEqual(['handler line', 'request']);
    for (const l of lines) expect(l).toMatchObject({ trace_id: traceId, span_id: spanId });
  });
});

describe('tracing off', () => {
  it('adds no span middleware and no trace ids to log lines', async () => {
    let off = '';
    const offSink = { write(chunk: string) { off += chunk; return true; } } as unknown as NodeJS.WritableStream;
    const plain = createApp({ log: createLogger({ level: 'info', destination: offSink }), metrics: createMetrics(), readiness: async () => [] });
    plain.get('/x', (c) => c.text('ok'));
    spans.reset();
    expect((await plain.request('/x', { headers: { traceparent: `00-${traceId}-${parentId}-01` } })).status).toBe(200);
    expect(spans.getFinishedSpans()).toHaveLength(0);
    expect(JSON.parse(off.trim())).not.toHaveProperty('trace_id');
  });
});
