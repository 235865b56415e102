// Shipping: schedules the pickup and issues the tracking number (shipping.cmd.*).
import { z } from 'zod';
import { OrderRef, ScheduleCommand, SHIPPING_STREAM, Subjects } from '../../contracts/commerce.ts';
import { int, readConfig } from '../kit/config.ts';
import { NonRetryableError } from '../kit/errors.ts';
import { enqueue } from '../kit/outbox.ts';
import type { Deps, Running } from '../kit/service.ts';
import { startWorker } from '../kit/worker.ts';
import { nextPickup, shippingProblem, trackingNumberFor } from './shipping.ts';

export { entities, migrations } from './entities.ts';

const configSchema = z.object({
  SHIPPING_FAIL_SKU_PREFIX: z.string().default('NOSHIP-'),
  SHIPPING_FAIL_RATE: z.coerce.number().min(0).max(1).default(0),
  SHIPPING_CONCURRENCY: int(32, 1, 1000),
  SHIPPING_RETRY_BASE_MS: int(500, 1),
});

const Command = z.union([ScheduleCommand, OrderRef]);

export async function start(deps: Deps): Promise<Running> {
  const config = readConfig(configSchema, deps.env);
  const rules = { failSkuPrefix: config.SHIPPING_FAIL_SKU_PREFIX, failRate: config.SHIPPING_FAIL_RATE };
  const worker = await startWorker({
    stream: SHIPPING_STREAM, consumer: 'shipping',
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics,
    schema: Command, key: (m) => m.orderUuid, concurrency: config.SHIPPING_CONCURRENCY,
    retry: { baseMs: config.SHIPPING_RETRY_BASE_MS, maxMs: 30_000 },
    handle: async (cmd, ctx) => {
      const id = cmd.orderUuid;
      const headers = ctx.requestId ? { 'X-Request-Id': ctx.requestId } : undefined;
      if (ctx.subject === Subjects.schedule) {
        if (!('items' in cmd)) throw new NonRetryableError('schedule without items');
        await ctx.tx(async (em) => {
          const [existing] = await em.execute<{ status: string; tracking_number: string | null; pickup_at: Date | null; detail: string | null }[]>(
            'select status, tracking_number, pickup_at, detail from shipping.shipments where order_id = ? for update', [id]);
          let reply;
          if (existing?.status === 'SCHEDULED') {
            reply = { subject: Subjects.scheduled, data: { type: 'scheduled', orderUuid: id, trackingNumber: existing.tracking_number!, pickupAt: new Date(existing.pickup_at!).toISOString() } };
          } else if (existing) {
            reply = { subject: Subjects.shippingFailed, data: { type: 'shipping-failed', orderUuid: id, detail: existing.status === 'CANCELLED' ? 'shipment was cancelled' : existing.detail ?? 'failed' } };
          } else {
            const problem = shippingProblem(id, cmd.items.map((i) => i.sku), rules);
            if (problem) {
              await em.execute(`insert into shipping.shipments (order_id, status, detail) values (?, 'FAILED', ?)`, [id, problem]);
              reply = { subject: Subjects.shippingFailed, data: { type: 'shipping-failed', orderUuid: id, detail: problem } };
            } else {
              const tracking = trackingNumberFor(id);
              const pickup = nextPickup(new Date());
              await em.execute(`insert into shipping.shipments (order_id, status, tracking_number, pickup_at) values (?, 'SCHEDULED', ?, ?)`, [id, tracking, pickup]);
              reply = { subject: Subjects.scheduled, data: { type: 'scheduled', orderUuid: id, trackingNumber: tracking, pickupAt: pickup.toISOString() } };
            }
          }
          await enqueue(em, [{ ...reply, headers }]);
        });
      } else if (ctx.subject === Subjects.cancelShipment) {
        await ctx.tx(async (em) => {
          // Cancelling leaves a tombstone, so a schedule that arrives later is refused.
          await em.execute(`insert into shipping.shipments (order_id, status) values (?, 'CANCELLED')
                            on conflict (order_id) do update set status = 'CANCELLED', updated_at = now()`, [id]);
          await enqueue(em, [{ subject: Subjects.shipmentCancelled, data: { type: 'shipment-cancelled', orderUuid: id }, headers }]);
        });
      } else {
        throw new NonRetryableError(`unknown shipping command ${ctx.subject}`);
      }
    },
  });
  return { async stop() { await worker.stop(); } };
}
