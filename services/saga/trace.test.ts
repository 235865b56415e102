// One trace per unit of work (issue 12, BRIEF.md "Observability conventions"): the
// POST /api/orders request's trace follows the order through the outbox, NATS, the
// saga and its participants, to the shipped mail's SMTP span, and a caller's W3C
// traceparent is continued rather than replaced.
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startCommerce, uid, type Commerce } from '../testing/index.ts';

const spans = new InMemorySpanExporter();
let k: Commerce;
beforeAll(async () => { k = await startCommerce({}, { spans }); });
afterAll(async () => { await k?.close(); });

const all = () => spans.getFinishedSpans();
const inTrace = (traceId: string) => all().filter((s) => s.spanContext().traceId === traceId);
const smtpSpan = (orderUuid: string, kind: string) => all().find((s) => s.name === 'smtp send' && s.attributes['orderflow.mail.message_id'] === `<${orderUuid}.${kind}@orderflow>`);
const processed = (t: ReadableSpan[], subject: string) => t.filter((s) => s.kind === SpanKind.CONSUMER && s.attributes['messaging.destination.name'] === subject);
const published = (t: ReadableSpan[], subject: string) => t.filter((s) => s.kind === SpanKind.PRODUCER && s.attributes['messaging.destination.name'] === subject);

/** Every span of the trace but its root has its parent in the trace: nothing was cut off on the way. */
function orphans(t: ReadableSpan[]): string[] {
  const ids = new Set(t.map((s) => s.spanContext().spanId));
  return t.filter((s) => s.parentSpanContext && !ids.has(s.parentSpanContext.spanId)).map((s) => s.name);
}

describe('one trace from POST /api/orders to the shipped mail', () => {
  it('carries the request trace through the outbox, NATS, inventory, payments, shipping and the saga to the SMTP send', async () => {
    const sku = uid('TRACE');
    await k.product(sku, 5, 1500);
    const r = await k.order([{ sku, quantity: 2 }]);
    expect(r.status).toBe(202);
    const o = await k.final(r.body.id);
    expect(o.status).toBe('SHIPPED');
    const shipped = (await eventually(() => smtpSpan(o.id, 'shipped'), { what: 'the shipped mail span' }))!;
    const traceId = shipped.spanContext().traceId;

    // The request's own SERVER span starts the trace.
    const t = (await eventually(() => {
      const spansOfTrace = inTrace(traceId);
      // Delivery spans end at the ack, a moment after the mail: wait until nothing is cut off.
      return spansOfTrace.some((s) => s.kind === SpanKind.SERVER) && orphans(spansOfTrace).length === 0 ? spansOfTrace : null;
    }, { what: 'the whole trace, without orphans' }))!;
    const server = t.filter((s) => s.kind === SpanKind.SERVER);
    expect(server.map((s) => s.name)).toEqual(['POST /api/orders']);
    expect(server[0]!.parentSpanContext).toBeUndefined();
    expect(server[0]!.attributes['http.response.status_code']).toBe(202);

    // Every hop of the saga, published and consumed in this one trace.
    for (const subject of ['orders.created', 'inventory.cmd.reserve', 'inventory.evt.reserved', 'payments.cmd.charge', 'payments.evt.charged',
      'shipping.cmd.schedule', 'shipping.evt.scheduled', 'inventory.cmd.deduct', 'saga.done.shipped']) {
      expect(published(t, subject).length, `publish ${subject}`).toBeGreaterThan(0);
      expect(processed(t, subject).length, `process ${subject}`).toBeGreaterThan(0);
    }
    // The external calls: the gateway charge and both mails, and SQL under the request and the consumers.
    expect(t.some((s) => s.kind === SpanKind.CLIENT && s.attributes['peer.service'] === 'payment-gateway' && s.attributes['http.request.method'] === 'POST')).toBe(true);
    expect(smtpSpan(o.id, 'received')?.spanContext().traceId).toBe(traceId);
    expect(t.filter((s) => s.attributes['db.system.name'] === 'postgresql').length).toBeGreaterThan(5);
    expect(t.some((s) => s.attributes['db.system.name'] === 'postgresql' && s.parentSpanContext?.spanId === server[0]!.spanContext().spanId)).toBe(true);
    // No statement text (MikroORM inlines values into it): the span names an operation and a table.
    expect(t.every((s) => !('db.query.text' in s.attributes))).toBe(true);
    // Each consumer continued the span that published its message.
    for (const c of t.filter((s) => s.kind === SpanKind.CONSUMER)) {
      const parent = t.find((s) => s.spanContext().spanId === c.parentSpanContext?.spanId);
      expect(parent?.kind, c.name).toBe(SpanKind.PRODUCER);
    }
  });

  it('continues an incoming W3C traceparent', async () => {
    const sku = uid('TRACEPARENT');
    await k.product(sku, 5);
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parent = '00f067aa0ba902b7';
    const r = await k.order([{ sku, quantity: 1 }], {}, { traceparent: `00-${traceId}-${parent}-01` });
    expect(r.status).toBe(202);
    const o = await k.final(r.body.id);
    expect(o.status).toBe('SHIPPED');
    const server = all().find((s) => s.kind === SpanKind.SERVER && s.spanContext().traceId === traceId);
    expect(server?.parentSpanContext?.spanId).toBe(parent);
    const shipped = (await eventually(() => smtpSpan(o.id, 'shipped'), { what: 'the shipped mail span' }))!;
    expect(shipped.spanContext().traceId).toBe(traceId);
  });
});
