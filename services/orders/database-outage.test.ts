// Postgres unreachable: intake answers 503 UNAVAILABLE (never a 500), readiness says
// why, and once the database is back everything works again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestPostgres, type TestPostgres, startTestCluster, type TestCluster } from '../testing/index.ts';

let pgsrv: TestPostgres;
let c: TestCluster;
beforeAll(async () => {
  pgsrv = await startTestPostgres();
  c = await startTestCluster({ TARGET: 'orders,notifications', DATABASE_URL: pgsrv.url });
});
afterAll(async () => { await c?.close().catch(() => {}); await pgsrv?.stop(); });

const order = () => ({ orderId: `D-${Math.random().toString(36).slice(2, 10)}`, email: 'db@example.com', paymentToken: 'tok_visa', items: [{ sku: 'SKU-1', quantity: 1 }] });

describe('database outage', () => {
  it('answers 503 UNAVAILABLE while Postgres is down and accepts again when it is back', async () => {
    expect((await c.post('/api/orders', order())).status).toBe(202);
    await pgsrv.kill();
    const res = await c.post('/api/orders', order());
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('UNAVAILABLE');
    const ready = await c.get('/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.missing).toContain('database');
    await pgsrv.restart();
    const again = await eventually(async () => { const r = await c.post('/api/orders', order()); return r.status === 202 ? r : undefined; }, { what: '202 after restart' });
    await eventually(() => c.sink.messages().some((m) => m.messageId === `<${again!.body.id}.received@orderflow>`), { what: 'mail after restart' });
  });
});
