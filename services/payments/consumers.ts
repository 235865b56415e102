// The payments mailbox (PAYMENTS, consumer `payments`): charge and refund commands from
// the saga. Commands that arrive together share one transaction (kit/batch-worker.ts):
// their gateway calls run in parallel, each outcome is recorded and answered in the
// batch's transaction. What must be durable before a call goes out (the CHARGING lease,
// a refund's CANCELLED mark) is committed on its own first, outside the batch.
// While the breaker is open the worker pulls nothing, and the calls in hand wait for it
// (gatewayCaller) without burning deliveries.
import { z } from 'zod';
import { ChargeCommand, OrderRef, PAYMENTS_STREAM, Subjects } from '../../contracts/commerce.ts';
import { NonRetryableError } from '../kit/index.ts';
import { enqueue, withTrace, type OutboxMessage } from '../kit/index.ts';
import type { BatchItem, EntityManager, GatewayClient, Sealer } from '../kit/index.ts';
import type { Deps } from '../kit/index.ts';
import { startBatchWorker, type BatchWorker } from '../kit/index.ts';
import type { PaymentsConfig } from './config.ts';
import { chargeOrder, gatewayCaller, recordCharges, refundOrder, takeLeases, type ChargeOutcome } from './payments.ts';

const Command = z.union([ChargeCommand, OrderRef]);
type Command = z.infer<typeof Command>;

/** `const w = await startPaymentsConsumer(deps, { client, sealer, config })` */
export async function startPaymentsConsumer(deps: Deps, o: { client: GatewayClient; sealer: Sealer; config: PaymentsConfig }): Promise<BatchWorker> {
  const { client, config } = o;
  return await startBatchWorker({
    stream: PAYMENTS_STREAM, consumer: 'payments',
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics, tracing: deps.tracing,
    schema: Command, key: (m) => m.orderUuid, batch: config.PAYMENTS_CONCURRENCY,
    retry: { baseMs: config.PAYMENTS_RETRY_BASE_MS, maxMs: config.PAYMENTS_RETRY_MAX_MS },
    paused: () => client.isOpen(),
    handle: (items, em) => onPaymentCommands(deps, o, items, em),
  });
}

/** Charge and refund commands of one batch; returns the ones whose call failed, to retry or dead-letter. */
async function onPaymentCommands(
  deps: Deps, { client, sealer, config }: { client: GatewayClient; sealer: Sealer; config: PaymentsConfig },
  items: BatchItem<Command>[], em: EntityManager,
): Promise<{ failed: { msgId: string; error: unknown }[] }> {
  const leaseMs = config.PAYMENTS_TIMEOUT_MS + 5000;
  const out: OutboxMessage[] = [];
  const charged: { cmd: z.infer<typeof ChargeCommand>; outcome: ChargeOutcome }[] = [];
  // The batch's CHARGING leases, in one statement committed before any call goes out.
  const leases = await takeLeases(deps.orm.em.fork(), items.flatMap((i) => (i.subject === Subjects.charge && 'amount' in i.data ? [i.data] : [])), leaseMs);
  // Each call in its command's trace (a batch of several runs in a span of its own).
  const settled = await Promise.allSettled(items.map((item) => withTrace(item.trace, async () => {
    const { data: cmd, subject, carry: headers, log } = item;
    const call = gatewayCaller(client, item);
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
  })));
  // The calls are done; record what they settled in this transaction, hand back the rest.
  const failed: { msgId: string; error: unknown }[] = [];
  for (const [i, r] of settled.entries()) {
    if (r.status === 'fulfilled') await r.value();
    else failed.push({ msgId: items[i]!.msgId, error: r.reason });
  }
  await recordCharges(em, charged);
  await enqueue(em, out);
  return { failed };
}
