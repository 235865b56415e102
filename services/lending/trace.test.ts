// One trace per unit of work (issue 12): a lending order's trace runs from
// POST /api/lending/orders through the batch and item workers to T24's reserve and invest calls.
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestCluster, type TestCluster } from '../testing/index.ts';
import { startT24Simulator, type RunningT24Simulator } from '../simulators/t24.ts';

const spans = new InMemorySpanExporter();
let c: TestCluster;
let t24: RunningT24Simulator;

beforeAll(async () => {
  t24 = await startT24Simulator({ port: 0, maxRps: 400, seed: 7 });
  c = await startTestCluster({ TARGET: 'lending', T24_URL: t24.url, T24_MAX_RPS: '400', LENDING_BATCH_SIZE: '2', T24_HEARTBEAT_MS: '200' }, { spans });
});
afterAll(async () => {
  await c?.close();
  await t24?.close();
});

describe('a lending order', () => {
  it('is one trace from the POST to every T24 invest call', async () => {
    const loanIds = ['TR-1', 'TR-2', 'TR-3'].map((l) => `${l}-${process.pid}`);
    const res = await c.post('/api/lending/orders', { investorId: 'inv-trace', items: loanIds.map((loanId) => ({ loanId, amount: 10 })) });
    expect(res.status).toBe(202);
    await eventually(async () => (await c.get(`/api/lending/orders/${res.body.id}`)).body.status === 'SUCCESS', { what: 'the order to succeed' });

    const server = spans.getFinishedSpans().find((s) => s.kind === SpanKind.SERVER && s.name === 'POST /api/lending/orders');
    expect(server).toBeDefined();
    const traceId = server!.spanContext().traceId;
    const t24Calls = (phase: string) => spans.getFinishedSpans().filter((s) => s.kind === SpanKind.CLIENT && s.attributes['peer.service'] === 't24'
      && String(s.attributes['url.full']).endsWith(`/${phase}`) && loanIds.some((l) => String(s.attributes['url.full']).includes(`/loans/${l}/`)));
    // Every loan's reserve and invest, in the request's trace: through two batches, their item fan-out and the invest fan-out.
    const invests = (await eventually(() => (t24Calls('invest').length >= loanIds.length ? t24Calls('invest') : null), { what: 'the invest spans' }))!;
    expect(invests.map((s) => s.spanContext().traceId)).toEqual(loanIds.map(() => traceId));
    expect(t24Calls('reserve').map((s) => s.spanContext().traceId)).toEqual(loanIds.map(() => traceId));
    for (const s of invests) expect(s.attributes['http.response.status_code']).toBe(200);
    const subjects = new Set(spans.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId && s.kind === SpanKind.CONSUMER).map((s) => s.attributes['messaging.destination.name']));
    expect([...subjects].sort()).toEqual(['lending.batches.invest', 'lending.batches.reserve', 'lending.items.invest', 'lending.items.reserve']);
  });
});
