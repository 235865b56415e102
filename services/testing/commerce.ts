// Test helpers for the commerce saga: a cluster with the gateway and SMS simulators
// started by the test (so it can turn their knobs), products, orders, and the books.
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { eventually, type TestNats } from './servers.ts';
import type { Env } from '../kit/index.ts';
import { startGatewaySimulator, type RunningGatewaySimulator } from '../simulators/gateway.ts';
import { startSmsSimulator } from '../simulators/sms.ts';
import type { SmtpSink } from '../simulators/smtp-sink.ts';
import { startTestCluster, type TestCluster } from './cluster.ts';
import { checkBooks, type BooksReport } from './books.ts';

export type Sms = Awaited<ReturnType<typeof startSmsSimulator>>;

export type Commerce = {
  c: TestCluster;
  gw: RunningGatewaySimulator;
  sms: Sms;
  stock: Record<string, { start: number; restocked?: number }>;
  accepted: string[];
  product(sku: string, stock: number, priceCents?: number): Promise<void>;
  order(items: { sku: string; quantity: number }[], over?: Record<string, unknown>, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
  final(id: string, timeoutMs?: number): Promise<any>;
  books(): Promise<BooksReport>;
  close(): Promise<void>;
};

export const FAST_ENV: Env = {
  PAYMENTS_RETRY_BASE_MS: '100', INVENTORY_RETRY_BASE_MS: '100', SHIPPING_RETRY_BASE_MS: '100', SAGA_RETRY_BASE_MS: '100',
  PAYMENTS_BREAKER_RESET_MS: '500',
};

let seq = 0;
export const uid = (p: string) => `${p}-${process.pid}-${(++seq).toString(36)}-${Math.random().toString(36).slice(2, 7)}`;

/** `const k = await startCommerce({ SAGA_STEP_TIMEOUT_MS: '1000' })` */
export async function startCommerce(env: Env = {}, shared?: { nats?: TestNats; databaseUrl?: string; sink?: SmtpSink; gw?: RunningGatewaySimulator; sms?: Sms; spans?: SpanExporter }): Promise<Commerce> {
  const gw = shared?.gw ?? await startGatewaySimulator({ port: 0, seed: 7 });
  const sms = shared?.sms ?? await startSmsSimulator({ port: 0, seed: 7 });
  const c = await startTestCluster({ TARGET: 'all', PAYMENT_GATEWAY_URL: gw.url, SMS_URL: sms.url, ...FAST_ENV, ...env }, shared);
  const stock: Commerce['stock'] = {};
  const accepted: string[] = [];
  const k: Commerce = {
    c, gw, sms, stock, accepted,
    async product(sku, n, priceCents = 1250) {
      const r = await c.post('/api/products', { sku, name: `Product ${sku}`, description: 'a thing for tests', priceCents, currency: 'USD', stock: n });
      if (r.status !== 201) throw new Error(`product ${sku}: ${r.status} ${JSON.stringify(r.body)}`);
      stock[sku] = { start: n };
    },
    async order(items, over = {}, headers = {}) {
      const r = await c.post('/api/orders', { orderId: uid('O'), email: 'ana@example.com', phone: '+15551234567', paymentToken: 'tok_visa', items, ...over }, headers);
      if (r.status === 202 && !accepted.includes(r.body.id)) accepted.push(r.body.id);
      return r;
    },
    async final(id, timeoutMs = 30_000) {
      return await eventually(async () => {
        const r = await c.get(`/api/orders/${id}`);
        return ['SHIPPED', 'FAILED'].includes(r.body.status) ? r.body : null;
      }, { timeoutMs, what: `order ${id} SHIPPED or FAILED` });
    },
    async books() {
      return await checkBooks({
        baseUrl: c.url, orders: accepted, stock, netCharged: (ref) => gw.sim.netCharged(ref), token: c.token,
        mailIds: () => c.sink.messages().map((m) => m.messageId), smsBodies: () => sms.sim.messages().map((m) => m.body),
      });
    },
    async close() {
      await c.close();
      if (!shared?.gw) await gw.close();
      if (!shared?.sms) await sms.close();
    },
  };
  return k;
}
