// Orders: HTTP DTOs and the events on subject orders.* (stream ORDERS).
import { z } from 'zod';

export const ORDERS_STREAM = 'ORDERS';
export const OrderSubjects = {
  created: 'orders.created',
} as const;

const orderId = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ -');
// Deliberately strict enough to reject header injection, control characters and obvious
// garbage; the SMTP server has the last word. Funding's contactEmail uses it too.
export const email = z.string().max(254).regex(/^[^\s\x00-\x1f\x7f@<>(),;:"\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/, 'must be an email address');
export const e164 = z.string().regex(/^\+[1-9]\d{6,14}$/, 'must be an E.164 phone number like +15551234567');
const sku = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ -');

export const OrderItem = z.object({
  sku,
  quantity: z.number().int('must be an integer').min(1).max(1000),
});

export const CreateOrderRequest = z.object({
  orderId,
  email,
  phone: e164.optional(),
  paymentToken: z.string().min(1).max(128),
  items: z.array(OrderItem).min(1).max(100),
});
export type CreateOrderRequest = z.infer<typeof CreateOrderRequest>;

export const OrderStatus = ['PENDING', 'STOCK_RESERVED', 'PAID', 'SHIPPED', 'FAILED'] as const;

/**
 * Event `orders.created`: the accepted order, as stored. The request's `paymentToken` is
 * never in it: intake seals it (services/kit/seal.ts) and only payments opens it.
 */
export const OrderCreated = z.object({
  id: z.uuid(),
  orderId,
  email: z.string(),
  phone: z.string().nullable().optional(),
  paymentTokenSealed: z.string().nullable().optional()
    .describe('the payment token sealed with PAYMENT_TOKEN_KEY (AES-256-GCM), `v1.<keyId>.<iv>.<ciphertext>.<tag>` in base64url; null when the order has none'),
  // Events published before tokens were sealed carry the token in clear here. Still read,
  // so that an order in flight across the upgrade is charged; never written any more.
  paymentToken: z.string().nullable().optional()
    .describe('deprecated: the clear token of events from before sealing; never written'),
  items: z.array(z.object({ sku: z.string(), quantity: z.number().int() })),
  createdAt: z.string(),
});
export type OrderCreated = z.infer<typeof OrderCreated>;
