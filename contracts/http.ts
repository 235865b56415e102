// What the HTTP API answers: the response bodies of CONTRACTS.md as zod schemas. Routes
// declare them (services/kit/http/route.ts), /openapi.json publishes them, and the test
// suite checks every answer it gets against that document. Objects are loose: a field
// added later is an addition to the contract, not a break.
import { z } from 'zod';
import { ApplicationStatuses } from './funding.ts';
import { LendingOrderStatus } from './lending.ts';
import { OrderStatus } from './orders.ts';

const at = z.string().describe('ISO 8601 timestamp');
const nullableAt = at.nullable();
const line = z.looseObject({ sku: z.string(), quantity: z.number().int() });
const history = z.array(z.looseObject({ status: z.string(), at, reason: z.string().nullable() }));

// ---- Orders ----------------------------------------------------------------
export const OrderAccepted = z.looseObject({ id: z.uuid(), orderId: z.string(), status: z.literal('PENDING'), items: z.array(line), createdAt: at });
export const OrderView = z.looseObject({
  id: z.uuid(), orderId: z.string(), email: z.string(), phone: z.string().nullable(), status: z.enum(OrderStatus), items: z.array(line),
  totalCents: z.number().nullable(), currency: z.string().nullable(), trackingNumber: z.string().nullable(), failureReason: z.string().nullable(),
  history, createdAt: at, updatedAt: at,
}).meta({ id: 'Order' });

// ---- Catalog and inventory -------------------------------------------------
export const ProductView = z.looseObject({ sku: z.string(), name: z.string(), description: z.string(), priceCents: z.number().int(), currency: z.string(), createdAt: at }).meta({ id: 'Product' });
export const ProductCreated = ProductView.extend({ stock: z.number().int() });
export const ProductPage = z.looseObject({ items: z.array(ProductView), nextCursor: z.string().nullable() });
export const StockView = z.looseObject({ sku: z.string(), onHand: z.number().int(), reserved: z.number().int(), available: z.number().int() }).meta({ id: 'Stock' });
export const ReserveAnswer = z.looseObject({ orderId: z.string(), status: z.literal('RESERVED'), items: z.array(z.looseObject({ sku: z.string() })) });
export const ReleaseAnswer = z.looseObject({ orderId: z.string(), status: z.literal('RELEASED') });

// ---- Lending ---------------------------------------------------------------
const counts = z.looseObject({ pending: z.number().int(), reserved: z.number().int(), invested: z.number().int(), failed: z.number().int() });
export const LendingOrderAcceptedBody = z.looseObject({ id: z.uuid(), status: z.literal('IN_PROGRESS'), totalItems: z.number().int(), batches: z.number().int() });
export const LendingOrderView = z.looseObject({
  id: z.uuid(), investorId: z.string(), status: z.enum(LendingOrderStatus), totalItems: z.number().int(), counts,
  failedItems: z.array(z.looseObject({ loanId: z.string(), reason: z.string() })), createdAt: at, completedAt: nullableAt,
}).meta({ id: 'LendingOrder' });

// ---- Funding ---------------------------------------------------------------
export const ApplicationAccepted = z.looseObject({ id: z.uuid(), status: z.literal('processing') });
export const ApplicationView = z.looseObject({
  id: z.uuid(), businessId: z.string(), status: z.enum(ApplicationStatuses), riskScore: z.number().nullable(), decision: z.string().nullable(),
  modelVersion: z.string().nullable(), disbursement: z.looseObject({ status: z.string() }).nullable(), createdAt: at, updatedAt: at,
}).meta({ id: 'Application' });
export const ApplicationStatusView = z.looseObject({ id: z.uuid(), status: z.enum(ApplicationStatuses), updatedAt: at });

// ---- DLQ and flags ---------------------------------------------------------
export const DlqEntryView = z.looseObject({
  id: z.string(), stream: z.string(), consumer: z.string(), subject: z.string(), deliveries: z.number().int(), reason: z.string(), error: z.string(), at, data: z.unknown(),
}).meta({ id: 'DlqEntry' });
export const DlqPageView = z.looseObject({ items: z.array(DlqEntryView), nextCursor: z.string().nullable(), total: z.number().int() });
export const DlqRedriven = z.looseObject({ redriven: z.number().int() });
export const DlqBulkRedriven = z.looseObject({ matched: z.number().int(), redriven: z.number().int() });
export const FlagView = z.looseObject({
  key: z.string(), enabled: z.boolean(), rolloutPercent: z.number(), variants: z.looseObject({ off: z.unknown(), on: z.unknown() }), revision: z.number().int(),
}).meta({ id: 'Flag' });
export const FlagList = z.looseObject({ items: z.array(FlagView) });
export const FlagWithHistory = FlagView.extend({ history: z.array(z.looseObject({ at, actor: z.string(), revision: z.number().int() })) });

// ---- Identity --------------------------------------------------------------
export const UserView = z.looseObject({ id: z.string(), email: z.string(), name: z.string(), roles: z.array(z.string()) }).meta({ id: 'User' });
export const UserPage = z.looseObject({ items: z.array(UserView), nextCursor: z.string().nullable() });
export const TokenPair = z.looseObject({ accessToken: z.string(), refreshToken: z.string(), tokenType: z.literal('Bearer'), expiresIn: z.number().int() });
export const ClientTokenAnswer = z.looseObject({ access_token: z.string(), token_type: z.literal('Bearer'), expires_in: z.number().int(), scope: z.string() });
export const OAuthError = z.looseObject({ error: z.string(), error_description: z.string().optional() }).meta({ id: 'OAuthError' });
export const ClientCreated = z.looseObject({ clientId: z.string(), clientSecret: z.string(), name: z.string(), scopes: z.array(z.string()) });
export const Jwks = z.looseObject({ keys: z.array(z.looseObject({ kty: z.string(), kid: z.string() })) });
