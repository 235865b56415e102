// The commerce saga (seeds 002, 003): catalog and inventory HTTP DTOs, and the
// commands, replies and status events the saga orchestrator exchanges with the
// inventory, payments and shipping actors. Every message is keyed by `orderUuid`
// (the order's `id`), so each actor handles one order's messages one at a time.
import { z } from 'zod';

export const sku = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ -');
const currency = z.string().regex(/^[A-Z]{3}$/, 'must be a three-letter ISO 4217 code in capitals');
const quantity = z.number().int('must be an integer').min(1).max(1_000_000);

// ---- Catalog (HTTP) --------------------------------------------------------

export const CreateProductRequest = z.object({
  sku,
  name: z.string().trim().min(1).max(200),
  description: z.string().max(5000).default(''),
  priceCents: z.number().int('must be an integer').min(0).max(100_000_000),
  currency: currency.default('USD'),
  stock: z.number().int('must be an integer').min(0).max(1_000_000_000).default(0),
});
export type CreateProductRequest = z.infer<typeof CreateProductRequest>;

export const ListProductsQuery = z.object({
  q: z.string().max(200).optional(),
  // Larger pages are clamped to 100 rather than refused.
  limit: z.coerce.number().int().min(1).transform((n) => Math.min(n, 100)).default(20),
  cursor: z.string().max(500).optional(),
});

// ---- Inventory (HTTP and the catalog's core-NATS request) ------------------

export const RestockRequest = z.object({ quantity });
export const ReserveRequest = z.object({
  orderId: z.string().min(1).max(64),
  items: z.array(z.object({ sku, quantity: z.number().int().min(1).max(1000) })).min(1).max(100),
});
export const ReleaseRequest = z.object({ orderId: z.string().min(1).max(64) });

/** Core NATS request/reply: the catalog creates a SKU's stock row when it creates the product. */
export const INVENTORY_INIT_SUBJECT = 'inventory.rpc.init';
export const InitItem = z.object({ sku, stock: z.number().int().min(0), priceCents: z.number().int().min(0), currency });
export type InitItem = z.infer<typeof InitItem>;

// ---- Saga messages -----------------------------------------------------------

export const INVENTORY_STREAM = 'INVENTORY';
export const PAYMENTS_STREAM = 'PAYMENTS';
export const SHIPPING_STREAM = 'SHIPPING';
/** Replies of inventory, payments and shipping: the saga's mailbox (work queue). */
export const SAGA_REPLIES_STREAM = 'SAGA_REPLIES';
/** The saga's status events (limits): orders and notifications subscribe. */
export const SAGA_STREAM = 'SAGA';

export const Subjects = {
  reserve: 'inventory.cmd.reserve',
  release: 'inventory.cmd.release',
  deduct: 'inventory.cmd.deduct',
  charge: 'payments.cmd.charge',
  refund: 'payments.cmd.refund',
  schedule: 'shipping.cmd.schedule',
  cancelShipment: 'shipping.cmd.cancel',

  reserved: 'inventory.evt.reserved',
  rejected: 'inventory.evt.rejected',
  released: 'inventory.evt.released',
  charged: 'payments.evt.charged',
  paymentFailed: 'payments.evt.failed',
  refunded: 'payments.evt.refunded',
  scheduled: 'shipping.evt.scheduled',
  shippingFailed: 'shipping.evt.failed',
  shipmentCancelled: 'shipping.evt.cancelled',

  /** `saga.step.<status>` for STOCK_RESERVED and PAID; `saga.done.<status>` for SHIPPED and FAILED. */
  status: (status: string) => `saga.${status === 'SHIPPED' || status === 'FAILED' ? 'done' : 'step'}.${status.toLowerCase()}`,
} as const;

const orderUuid = z.uuid();
const Line = z.object({ sku, quantity: z.number().int().min(1) });
export const PricedLine = Line.extend({ priceCents: z.number().int().min(0), currency });
export type PricedLine = z.infer<typeof PricedLine>;

export const ReserveCommand = z.object({ orderUuid, items: z.array(Line).min(1) });
export const OrderRef = z.object({ orderUuid });
/**
 * `payments.cmd.charge`. `sealedSource` is the order's payment token as intake sealed it
 * (see OrderCreated); payments opens it right before the gateway call. `source` is the
 * clear token of commands from before sealing (an old saga or message in flight across
 * the upgrade), still read so that the upgrade loses no charge; never written any more.
 */
export const ChargeCommand = z.object({
  orderUuid, amount: z.number().int().min(0), currency,
  sealedSource: z.string().nullable().optional().describe('the sealed payment token, `v1.<keyId>.<iv>.<ciphertext>.<tag>`'),
  source: z.string().nullable().optional().describe('deprecated: the clear token of commands from before sealing'),
});
export const ScheduleCommand = z.object({ orderUuid, orderId: z.string(), items: z.array(Line) });

export const FailureReasons = ['UNKNOWN_SKU', 'OUT_OF_STOCK', 'PAYMENT_DECLINED', 'PAYMENT_FAILED', 'SHIPPING_FAILED'] as const;
export type FailureReason = (typeof FailureReasons)[number];

/** Every reply the saga consumes, one schema (discriminated by `type`). */
export const SagaReply = z.discriminatedUnion('type', [
  z.object({ type: z.literal('reserved'), orderUuid, lines: z.array(PricedLine) }),
  z.object({ type: z.literal('rejected'), orderUuid, reason: z.enum(['UNKNOWN_SKU', 'OUT_OF_STOCK', 'CANCELLED']), skus: z.array(z.string()) }),
  z.object({ type: z.literal('released'), orderUuid }),
  z.object({ type: z.literal('charged'), orderUuid, chargeId: z.string().nullable(), amount: z.number().int() }),
  z.object({ type: z.literal('payment-failed'), orderUuid, reason: z.enum(['PAYMENT_DECLINED', 'PAYMENT_FAILED', 'CANCELLED']), detail: z.string() }),
  z.object({ type: z.literal('refunded'), orderUuid, amount: z.number().int() }),
  z.object({ type: z.literal('scheduled'), orderUuid, trackingNumber: z.string(), pickupAt: z.string() }),
  z.object({ type: z.literal('shipping-failed'), orderUuid, detail: z.string() }),
  z.object({ type: z.literal('shipment-cancelled'), orderUuid }),
]);
export type SagaReply = z.infer<typeof SagaReply>;

export const HistoryEntry = z.object({ status: z.string(), at: z.string(), reason: z.string().nullable() });

/** `saga.step.*` and `saga.done.*`: the order as the saga sees it; `version` orders them. */
export const SagaStatusEvent = z.object({
  id: orderUuid,
  orderId: z.string(),
  email: z.string(),
  phone: z.string().nullable(),
  status: z.enum(['PENDING', 'STOCK_RESERVED', 'PAID', 'SHIPPED', 'FAILED']),
  failureReason: z.enum(FailureReasons).nullable(),
  trackingNumber: z.string().nullable(),
  totalCents: z.number().int().nullable(),
  currency: z.string().nullable(),
  /** What the refund compensation gave back, once it answered (so a FAILED mail can say a charge was refunded); null otherwise, absent in older events. */
  refundedCents: z.number().int().nullable().optional(),
  history: z.array(HistoryEntry),
  version: z.number().int(),
  at: z.string(),
});
export type SagaStatusEvent = z.infer<typeof SagaStatusEvent>;
