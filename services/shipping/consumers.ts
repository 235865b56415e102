// The shipping mailbox (SHIPPING, consumer `shipping`): schedule and cancel commands from
// the saga. Commands that arrive together share one transaction (kit/batch-worker.ts).
import { z } from 'zod';
import { OrderRef, ScheduleCommand, SHIPPING_STREAM, Subjects } from '../../contracts/commerce.ts';
import { NonRetryableError } from '../kit/index.ts';
import { enqueue, type OutboxMessage } from '../kit/index.ts';
import type { BatchItem, EntityManager } from '../kit/index.ts';
import type { Deps } from '../kit/index.ts';
import { startBatchWorker, type BatchWorker } from '../kit/index.ts';
import type { ShippingConfig } from './config.ts';
import { schedulePickups, type ShippingRules } from './shipping.ts';

const Command = z.union([ScheduleCommand, OrderRef]);
type Command = z.infer<typeof Command>;

/** `const w = await startShippingConsumer(deps, config)` */
export async function startShippingConsumer(deps: Deps, config: ShippingConfig): Promise<BatchWorker> {
  const rules: ShippingRules = { failSkuPrefix: config.SHIPPING_FAIL_SKU_PREFIX, failRate: config.SHIPPING_FAIL_RATE };
  return await startBatchWorker({
    stream: SHIPPING_STREAM, consumer: 'shipping',
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics, tracing: deps.tracing,
    schema: Command, key: (m) => m.orderUuid, batch: config.SHIPPING_BATCH,
    retry: { baseMs: config.SHIPPING_RETRY_BASE_MS, maxMs: 30_000 },
    handle: (items, em) => onShippingCommands(items, em, rules),
  });
}

/** Schedule and cancel commands of one batch, answered in its transaction. */
async function onShippingCommands(items: BatchItem<Command>[], em: EntityManager, rules: ShippingRules): Promise<void> {
  for (const { data: cmd, subject } of items) {
    if (subject === Subjects.schedule && !('items' in cmd)) throw new NonRetryableError('schedule without items');
    if (subject !== Subjects.schedule && subject !== Subjects.cancelShipment) throw new NonRetryableError(`unknown shipping command ${subject}`);
  }
  const out: OutboxMessage[] = [];
  // Cancelling leaves a tombstone, so a schedule that arrives later is refused.
  const cancels = items.filter((i) => i.subject === Subjects.cancelShipment);
  if (cancels.length) {
    await em.execute(`insert into shipping.shipments (order_id, status) values ${cancels.map(() => "(?, 'CANCELLED')").join(', ')}
                      on conflict (order_id) do update set status = 'CANCELLED', updated_at = now()`, cancels.map((i) => i.data.orderUuid));
  }
  const schedules = items.filter((i) => i.subject === Subjects.schedule);
  const replies = await schedulePickups(em, schedules.map((i) => ({ id: i.data.orderUuid, skus: (i.data as z.infer<typeof ScheduleCommand>).items.map((x) => x.sku) })), rules);
  for (const { data: cmd, subject, carry: headers } of items) {
    if (subject === Subjects.schedule) out.push({ ...replies.get(cmd.orderUuid)!, headers });
    else out.push({ subject: Subjects.shipmentCancelled, data: { type: 'shipment-cancelled', orderUuid: cmd.orderUuid }, headers });
  }
  await enqueue(em, out);
}
