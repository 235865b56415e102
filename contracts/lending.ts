// P2P lending (seed 000): HTTP DTOs and the commands on the LENDING_BATCHES and
// LENDING_ITEMS work-queue streams.
import { z } from 'zod';

export const LENDING_BATCHES_STREAM = 'LENDING_BATCHES';
export const LENDING_ITEMS_STREAM = 'LENDING_ITEMS';
export const LENDING_BATCH_CONSUMER = 'lending-batches';
export const LENDING_ITEM_CONSUMER = 'lending-items';
/** KV bucket of live lending replicas and their share of T24_MAX_RPS (see services/lending/rate-share.ts). */
export const T24_MEMBERS_BUCKET = 't24-members';

export const LendingSubjects = {
  /** One batch of an order's items to claim in our ledger and fan out. */
  batchReserve: 'lending.batches.reserve',
  /** One batch of an order's reserved items to fan out for investing (the invest phase began). */
  batchInvest: 'lending.batches.invest',
  itemReserve: 'lending.items.reserve',
  itemInvest: 'lending.items.invest',
} as const;

export const MAX_ORDER_ITEMS = 50_000;

const token = (what: string, max: number) =>
  z.string().regex(new RegExp(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,${max - 1}}$`), `${what} must be 1-${max} characters of A-Z a-z 0-9 . _ : - (starting with a letter or digit)`);

export const loanId = token('loanId', 64);
export const investorId = token('investorId', 128);

export const LendingOrderItem = z.object({
  loanId,
  // Money in the investor's currency; T24 gets it as sent.
  amount: z.number().positive('must be greater than 0').max(1e12, 'must be at most 1e12'),
});

export const CreateLendingOrderRequest = z.object({
  investorId,
  items: z.array(LendingOrderItem).min(1, 'must hold at least 1 item').max(MAX_ORDER_ITEMS, `must hold at most ${MAX_ORDER_ITEMS} items`),
});
export type CreateLendingOrderRequest = z.infer<typeof CreateLendingOrderRequest>;

export const LendingOrderStatus = ['IN_PROGRESS', 'SUCCESS', 'PARTIALLY_INVESTED', 'FAILED'] as const;
export type LendingOrderStatus = (typeof LendingOrderStatus)[number];
export const FINAL_STATUSES: readonly LendingOrderStatus[] = ['SUCCESS', 'PARTIALLY_INVESTED', 'FAILED'];

export type LendingCounts = { pending: number; reserved: number; invested: number; failed: number };

/** `202` body of `POST /api/lending/orders`. */
export type LendingOrderAccepted = { id: string; status: 'IN_PROGRESS'; totalItems: number; batches: number };

/** `GET /api/lending/orders/{id}`. */
export type LendingOrderView = {
  id: string; investorId: string; status: LendingOrderStatus; totalItems: number;
  counts: LendingCounts; failedItems: { loanId: string; reason: string }[];
  createdAt: string; completedAt: string | null;
};

/** One `progress` event of `GET /api/lending/orders/{id}/events`; the last one carries a final status. */
export type LendingOrderProgress = { id: string; status: LendingOrderStatus; totalItems: number; counts: LendingCounts; completedAt: string | null };

/** Commands `lending.batches.reserve` and `lending.batches.invest`. */
export const BatchCommand = z.object({ orderId: z.uuid(), batch: z.number().int().min(0) });
export type BatchCommand = z.infer<typeof BatchCommand>;

/** Commands `lending.items.reserve` and `lending.items.invest`: one loan of one order. */
export const ItemCommand = z.object({ orderId: z.uuid(), loanId: z.string().min(1).max(64) });
export type ItemCommand = z.infer<typeof ItemCommand>;

/**
 * Reasons an item fails with, besides T24's own (`LOAN_NOT_FOUND`, `INVALID_REQUEST`,
 * `CONFLICT:<status>:<investor>`, `HTTP_<status>`).
 */
export const LendingFailureReasons = {
  /** Another order (ours or another investor's) holds the loan in our ledger. */
  loanInAnotherOrder: 'LOAN_IN_ANOTHER_ORDER',
  /** Another order already invested in the loan. */
  loanAlreadyInvested: 'LOAN_ALREADY_INVESTED',
  /** T24 kept failing transiently for longer than the item's retry budget. */
  t24Unavailable: 'T24_UNAVAILABLE',
} as const;
