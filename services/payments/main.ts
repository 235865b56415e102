// Payments: charges and refunds through the payment gateway (payments.cmd.*), behind
// the kit's breaker-guarded client. While the breaker is open the worker pulls nothing,
// and the calls in hand wait for it (gatewayCaller) without burning deliveries.
import { z } from 'zod';
import { ChargeCommand, OrderRef, PAYMENTS_STREAM, Subjects } from '../../contracts/commerce.ts';
import { int, readConfig, url } from '../kit/config.ts';
import { ConfigError, NonRetryableError } from '../kit/errors.ts';
import { createGatewayClient } from '../kit/gateway-client.ts';
import { paymentTokenSealer } from '../kit/seal.ts';
import { enqueue, type OutboxMessage } from '../kit/outbox.ts';
import { defineModule } from '../kit/modules.ts';
import type { Deps, Running } from '../kit/service.ts';
import { startBatchWorker } from '../kit/batch-worker.ts';
import { chargeOrder, gatewayCaller, recordCharges, refundOrder, takeLeases, type ChargeOutcome } from './payments.ts';
import { entities, migrations } from './entities.ts';

export { entities, migrations };

const configSchema = z.object({
  PAYMENT_GATEWAY_URL: url(['http', 'https']),
  PAYMENTS_CONCURRENCY: int(32, 1, 1000),
  PAYMENTS_RETRY_BASE_MS: int(500, 1),
  PAYMENTS_RETRY_MAX_MS: int(30_000, 1),
  PAYMENTS_TIMEOUT_MS: int(10_000, 100),
  PAYMENTS_BREAKER_ERROR_PCT: int(50, 1, 100),
  PAYMENTS_BREAKER_VOLUME: int(10, 1),
  PAYMENTS_BREAKER_RESET_MS: int(5_000, 100),
});

export async function start(deps: Deps): Promise<Running> {
  const config = readConfig(configSchema, { ...deps.env, PAYMENT_GATEWAY_URL: deps.env.PAYMENT_GATEWAY_URL || deps.endpoints.gateway });
  if (!config.PAYMENT_GATEWAY_URL) throw new ConfigError('PAYMENT_GATEWAY_URL is required for the payments service');
  // Opens the tokens orders sealed (kit/seal.ts); the same PAYMENT_TOKEN_KEY list as orders.
  const sealer = paymentTokenSealer(deps.env, deps.log);
  const client = createGatewayClient({
    metrics: { metrics: deps.metrics, client: 'payments' },
    baseUrl: config.PAYMENT_GATEWAY_URL, log: deps.log, timeoutMs: config.PAYMENTS_TIMEOUT_MS,
    breaker: { errorThresholdPercentage: config.PAYMENTS_BREAKER_ERROR_PCT, volumeThreshold: config.PAYMENTS_BREAKER_VOLUME, resetTimeoutMs: config.PAYMENTS_BREAKER_RESET_MS },
  });
  const leaseMs = config.PAYMENTS_TIMEOUT_MS + 5000;
  // Commands that arrive together share one transaction (kit/batch-worker.ts): their
  // gateway calls run in parallel, each outcome is recorded and answered in the batch's
  // transaction. What must be durable before a call goes out (the CHARGING lease, a
  // refund's CANCELLED mark) is committed on its own first, outside the batch.
  const worker = await startBatchWorker({
    stream: PAYMENTS_STREAM, consumer: 'payments',
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics,
    schema: z.union([ChargeCommand, OrderRef]), key: (m) => m.orderUuid, batch: config.PAYMENTS_CONCURRENCY,
    retry: { baseMs: config.PAYMENTS_RETRY_BASE_MS, maxMs: config.PAYMENTS_RETRY_MAX_MS },
    paused: () => client.isOpen(),
    handle: async (items, em) => {
      const out: OutboxMessage[] = [];
      const charged: { cmd: z.infer<typeof ChargeCommand>; outcome: ChargeOutcome }[] = [];
      // The batch's CHARGING leases, in one statement committed before any call goes out.
      const leases = await takeLeases(deps.orm.em.fork(), items.flatMap((i) => (i.subject === Subjects.charge && 'amount' in i.data ? [i.data] : [])), leaseMs);
      const settled = await Promise.allSettled(items.map(async (item) => {
        const { data: cmd, subject, requestId, log } = item;
        const call = gatewayCaller(client, item);
        const headers = requestId ? { 'X-Request-Id': requestId } : undefined;
        if (subject === Subjects.charge) {
          if (!('amount' in cmd)) throw new NonRetryableError('charge without amount');
          const outcome = await chargeOrder({ client, call, em: deps.orm.em.fork(), sealer }, cmd, leases.get(cmd.orderUuid));
          return async () => {
            charged.push({ cmd, outcome });
            out.push({ subject: outcome.type === 'charged' ? Subjects.charged : Subjects.paymentFailed, data: { ...outcome, orderUuid: cmd.orderUuid }, headers });
            log.info({ orderUuid: cmd.orderUuid, outcome: outcome.type }, 'charge');
          };
        }
        if (subject === Subjects.refund) {
          const amount = await refundOrder({ client, call, em: deps.orm.em.fork() }, cmd.orderUuid);
          return async () => {
            await em.execute('update payments.payments set refunded_amount = ?, updated_at = now() where order_id = ?', [amount, cmd.orderUuid]);
            out.push({ subject: Subjects.refunded, data: { type: 'refunded', orderUuid: cmd.orderUuid, amount }, headers });
            log.info({ orderUuid: cmd.orderUuid, amount }, 'payment cancelled and refunded');
          };
        }
        throw new NonRetryableError(`unknown payments command ${subject}`);
      }));
      // The calls are done; record what they settled in this transaction, hand back the rest.
      const failed: { msgId: string; error: unknown }[] = [];
      for (const [i, r] of settled.entries()) {
        if (r.status === 'fulfilled') await r.value();
        else failed.push({ msgId: items[i]!.msgId, error: r.reason });
      }
      await recordCharges(em, charged);
      await enqueue(em, out);
      return { failed };
    },
  });
  return {
    async stop() {
      await worker.stop();
      client.close();
    },
  };
}

/** The `payments` target. Charge and refund outcomes leave through the outbox. */
export const module = defineModule({
  name: 'payments', schema: 'payments', entities, migrations, start,
  needs: { schemas: [], outboxRelay: true, dlqMover: false, externals: ['gateway'] },
});
