// Shipping: schedules the pickup and issues the tracking number (shipping.cmd.*).
import { z } from 'zod';
import { OrderRef, ScheduleCommand, SHIPPING_STREAM, Subjects } from '../../contracts/commerce.ts';
import { int, readConfig } from '../kit/config.ts';
import { NonRetryableError } from '../kit/errors.ts';
import type { EntityManager } from '../kit/db.ts';
import { enqueue, type OutboxMessage } from '../kit/outbox.ts';
import type { Deps, Running } from '../kit/service.ts';
import { startBatchWorker } from '../kit/batch-worker.ts';
import { nextPickup, shippingProblem, trackingNumberFor, type ShippingRules } from './shipping.ts';

export { entities, migrations } from './entities.ts';

const configSchema = z.object({
  SHIPPING_FAIL_SKU_PREFIX: z.string().default('NOSHIP-'),
  SHIPPING_FAIL_RATE: z.coerce.number().min(0).max(1).default(0),
  SHIPPING_BATCH: int(64, 1, 1000),
  SHIPPING_RETRY_BASE_MS: int(500, 1),
});

const Command = z.union([ScheduleCommand, OrderRef]);

export async function start(deps: Deps): Promise<Running> {
  const config = readConfig(configSchema, deps.env);
  const rules = { failSkuPrefix: config.SHIPPING_FAIL_SKU_PREFIX, failRate: config.SHIPPING_FAIL_RATE };
  const worker = await startBatchWorker({
    stream: SHIPPING_STREAM, consumer: 'shipping',
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics,
    schema: Command, key: (m) => m.orderUuid, batch: config.SHIPPING_BATCH,
    retry: { baseMs: config.SHIPPING_RETRY_BASE_MS, maxMs: 30_000 },
    handle: async (items, em) => {
      const out: OutboxMessage[] = [];
      for (const { data: cmd, subject, requestId } of items) {
        const id = cmd.orderUuid;
        const headers = requestId ? { 'X-Request-Id': requestId } : undefined;
        if (subject === Subjects.schedule) {
          if (!('items' in cmd)) throw new NonRetryableError('schedule without items');
          out.push({ ...await schedule(em, id, cmd.items.map((i) => i.sku), rules), headers });
        } else if (subject === Subjects.cancelShipment) {
          // Cancelling leaves a tombstone, so a schedule that arrives later is refused.
          await em.execute(`insert into shipping.shipments (order_id, status) values (?, 'CANCELLED')
                            on conflict (order_id) do update set status = 'CANCELLED', updated_at = now()`, [id]);
          out.push({ subject: Subjects.shipmentCancelled, data: { type: 'shipment-cancelled', orderUuid: id }, headers });
        } else {
          throw new NonRetryableError(`unknown shipping command ${subject}`);
        }
      }
      await enqueue(em, out);
    },
  });
  return { async stop() { await worker.stop(); } };
}

/** Schedule one order's pickup (idempotent per order); returns the reply to send. */
async function schedule(em: EntityManager, id: string, skus: string[], rules: ShippingRules): Promise<OutboxMessage> {
  const [existing] = await em.execute<{ status: string; tracking_number: string | null; pickup_at: Date | null; detail: string | null }[]>(
    'select status, tracking_number, pickup_at, detail from shipping.shipments where order_id = ? for update', [id]);
  if (existing?.status === 'SCHEDULED') {
    return { subject: Subjects.scheduled, data: { type: 'scheduled', orderUuid: id, trackingNumber: existing.tracking_number!, pickupAt: new Date(existing.pickup_at!).toISOString() } };
  }
  if (existing) {
    return { subject: Subjects.shippingFailed, data: { type: 'shipping-failed', orderUuid: id, detail: existing.status === 'CANCELLED' ? 'shipment was cancelled' : existing.detail ?? 'failed' } };
  }
  const problem = shippingProblem(id, skus, rules);
  if (problem) {
    await em.execute(`insert into shipping.shipments (order_id, status, detail) values (?, 'FAILED', ?)`, [id, problem]);
    return { subject: Subjects.shippingFailed, data: { type: 'shipping-failed', orderUuid: id, detail: problem } };
  }
  const tracking = trackingNumberFor(id);
  const pickup = nextPickup(new Date());
  await em.execute(`insert into shipping.shipments (order_id, status, tracking_number, pickup_at) values (?, 'SCHEDULED', ?, ?)`, [id, tracking, pickup]);
  return { subject: Subjects.scheduled, data: { type: 'scheduled', orderUuid: id, trackingNumber: tracking, pickupAt: pickup.toISOString() } };
}
