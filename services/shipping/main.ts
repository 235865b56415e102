// Shipping: schedules the pickup and issues the tracking number (shipping.cmd.*).
import { z } from 'zod';
import { OrderRef, ScheduleCommand, SHIPPING_STREAM, Subjects } from '../../contracts/commerce.ts';
import { int, readConfig } from '../kit/index.ts';
import { NonRetryableError } from '../kit/index.ts';
import type { EntityManager } from '../kit/index.ts';
import { enqueue, type OutboxMessage } from '../kit/index.ts';
import { defineModule } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { startBatchWorker } from '../kit/index.ts';
import { nextPickup, shippingProblem, trackingNumberFor, type ShippingRules } from './shipping.ts';
import { entities, migrations } from './entities.ts';

export { entities, migrations };

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
      const replies = await schedule(em, schedules.map((i) => ({ id: i.data.orderUuid, skus: (i.data as z.infer<typeof ScheduleCommand>).items.map((x) => x.sku) })), rules);
      for (const { data: cmd, subject, requestId } of items) {
        const headers = requestId ? { 'X-Request-Id': requestId } : undefined;
        if (subject === Subjects.schedule) out.push({ ...replies.get(cmd.orderUuid)!, headers });
        else out.push({ subject: Subjects.shipmentCancelled, data: { type: 'shipment-cancelled', orderUuid: cmd.orderUuid }, headers });
      }
      await enqueue(em, out);
    },
  });
  return { async stop() { await worker.stop(); } };
}

type Shipment = { order_id: string; status: string; tracking_number: string | null; pickup_at: Date | null; detail: string | null };

/** Schedule the orders' pickups (idempotent per order, set-based); returns the reply to send per order. */
async function schedule(em: EntityManager, orders: { id: string; skus: string[] }[], rules: ShippingRules): Promise<Map<string, OutboxMessage>> {
  const replies = new Map<string, OutboxMessage>();
  if (!orders.length) return replies;
  const existing = new Map((await em.execute<Shipment[]>(
    'select order_id, status, tracking_number, pickup_at, detail from shipping.shipments where order_id in (?) for update', [orders.map((o) => o.id)]))
    .map((r) => [r.order_id, r]));
  const fresh: Shipment[] = [];
  for (const { id, skus } of orders) {
    let row = existing.get(id);
    if (!row) {
      const problem = shippingProblem(id, skus, rules);
      row = problem
        ? { order_id: id, status: 'FAILED', tracking_number: null, pickup_at: null, detail: problem }
        : { order_id: id, status: 'SCHEDULED', tracking_number: trackingNumberFor(id), pickup_at: nextPickup(new Date()), detail: null };
      fresh.push(row);
    }
    replies.set(id, row.status === 'SCHEDULED'
      ? { subject: Subjects.scheduled, data: { type: 'scheduled', orderUuid: id, trackingNumber: row.tracking_number!, pickupAt: new Date(row.pickup_at!).toISOString() } }
      : { subject: Subjects.shippingFailed, data: { type: 'shipping-failed', orderUuid: id, detail: row.status === 'CANCELLED' ? 'shipment was cancelled' : row.detail ?? 'failed' } });
  }
  if (fresh.length) {
    await em.execute(`insert into shipping.shipments (order_id, status, tracking_number, pickup_at, detail) values ${fresh.map(() => '(?, ?, ?, ?, ?)').join(', ')}`,
      fresh.flatMap((r) => [r.order_id, r.status, r.tracking_number, r.pickup_at, r.detail]));
  }
  return replies;
}

/** The `shipping` target. Scheduled and cancelled replies leave through the outbox. */
export const module = defineModule({
  name: 'shipping', schema: 'shipping', entities, migrations, start,
  needs: { schemas: [], outboxRelay: true, dlqMover: false, externals: [] },
});
