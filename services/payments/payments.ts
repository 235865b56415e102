// Charge and refund through the payment gateway, per order (reference = the order's
// uuid). The rules that keep "charged exactly once" and "a failed order holds no
// charge" true:
//  - the Idempotency-Key is derived from (order, operation): `charge:<order>`,
//    `refund:<charge id>`; the request bodies are deterministic, so a retry replays;
//  - before a charge is sent again after any attempt that may have reached the
//    gateway (status CHARGING), the gateway is asked what it holds for the reference;
//  - a refund first marks the payment CANCELLED, so a charge command that arrives
//    later charges nothing; if a charge call may still be out (its lease), the refund
//    waits for it to settle; then every succeeded charge for the reference is
//    refunded once (payments.refunds remembers which).
import { setTimeout as sleep } from 'node:timers/promises';
import type { GatewayClient, GatewayCharge } from '../kit/index.ts';
import { GatewayRateLimitedError, GatewayRejectedError, GatewayUnavailableError } from '../kit/index.ts';
import { NonRetryableError, RetryLaterError } from '../kit/index.ts';
import type { EntityManager } from '../kit/index.ts';
import { looksSealed, type Sealer } from '../kit/index.ts';

export type ChargeOutcome =
  | { type: 'charged'; chargeId: string | null; amount: number }
  | { type: 'payment-failed'; reason: 'PAYMENT_DECLINED' | 'PAYMENT_FAILED' | 'CANCELLED'; detail: string };

type Row = { status: string; amount: number | null; charge_id: string | null; detail: string | null; lease_until: Date | null };

const read = async (em: EntityManager, orderUuid: string, lock = false) =>
  (await em.execute<Row[]>(`select status, amount, charge_id, detail, lease_until from payments.payments where order_id = ?${lock ? ' for update' : ''}`, [orderUuid]))[0];

const settled = (r: Row): ChargeOutcome | null => {
  if (r.status === 'CHARGED') return { type: 'charged', chargeId: r.charge_id, amount: r.amount ?? 0 };
  if (r.status === 'DECLINED') return { type: 'payment-failed', reason: 'PAYMENT_DECLINED', detail: r.detail ?? 'card declined' };
  if (r.status === 'FAILED') return { type: 'payment-failed', reason: 'PAYMENT_FAILED', detail: r.detail ?? 'payment failed' };
  if (r.status === 'CANCELLED') return { type: 'payment-failed', reason: 'CANCELLED', detail: 'payment was cancelled before it was charged' };
  return null;
};

export type GatewayCall = <T>(fn: () => Promise<T>) => Promise<T>;

/**
 * Run a gateway call; while the breaker is open, keep the message in hand (no
 * delivery burnt, heartbeats sent) instead of failing it. Maps pacing to RetryLater.
 * Every wait is a real timer: in half-open, opossum refuses all but the one trial
 * call at once, and retrying without a pause would spin the event loop.
 */
export function gatewayCaller(client: GatewayClient, msg: { working(): void }, maxWaitMs = 600_000): GatewayCall {
  return async (fn) => {
    const until = Date.now() + maxWaitMs;
    let beat = Date.now();
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        if (err instanceof GatewayRateLimitedError) throw new RetryLaterError(err.retryAfterMs, err.message);
        if (!(err instanceof GatewayUnavailableError) || Date.now() > until) throw err;
        do {
          if (Date.now() - beat > 5000) { msg.working(); beat = Date.now(); }
          await sleep(150 + Math.random() * 250);
        } while (client.isOpen() && Date.now() < until);
      }
    }
  };
}

export type Lease = { again: boolean } | undefined;

/**
 * Take (or renew) the CHARGING lease of every order in one statement, committed before
 * any call goes out: from here on a call may be out. Per order: `{ again }` (true when an
 * earlier attempt had taken it, told by xmax on the updated row), or undefined when the
 * payment is already settled or cancelled. `leaseMs` must exceed the client's timeout:
 * while a call may be out, refunds wait.
 */
export async function takeLeases(em: EntityManager, cmds: { orderUuid: string; amount: number; currency: string }[], leaseMs: number): Promise<Map<string, Lease>> {
  const out = new Map<string, Lease>();
  if (!cmds.length) return out;
  const rows = await em.execute<{ order_id: string; again: boolean }[]>(
    `insert into payments.payments (order_id, status, amount, currency, lease_until)
     values ${cmds.map(() => `(?, 'CHARGING', ?, ?, now() + make_interval(secs => ?))`).join(', ')}
     on conflict (order_id) do update set lease_until = excluded.lease_until, updated_at = now() where payments.payments.status = 'CHARGING'
     returning order_id, (xmax::text <> '0') as again`,
    cmds.flatMap((c) => [c.orderUuid, c.amount, c.currency, leaseMs / 1000]));
  for (const r of rows) out.set(r.order_id, { again: r.again });
  return out;
}

/**
 * The clear payment token for the gateway. Throws NonRetryableError (to the DLQ) when a
 * sealed token does not open; the message names the order and the key id, never the token.
 */
export function openSource(sealer: Sealer, orderUuid: string, token: string): string {
  // Upgrade path: a command, saga or event from before sealing carries the token in clear.
  // It is used as it is (and nothing of it is logged), so no order in flight is lost.
  if (!looksSealed(token)) return token;
  try {
    return sealer.open(token);
  } catch (err) {
    throw new NonRetryableError(`the payment token of order ${orderUuid} does not open (${(err as Error).message}); check PAYMENT_TOKEN_KEY: the key that sealed it must be listed`, { cause: err });
  }
}

/** `text` with every occurrence of `secret` masked: what the gateway says may echo the source. */
const mask = (text: string, secret: string) => (secret && text.includes(secret) ? text.split(secret).join('[payment token]') : text);

/** Charge an order once, under the lease `takeLeases` gave it. Returns the outcome to reply with; throws to retry. */
export async function chargeOrder(
  deps: { client: GatewayClient; call: GatewayCall; em: EntityManager; sealer: Sealer },
  cmd: { orderUuid: string; amount: number; currency: string; sealedSource?: string | null; source?: string | null },
  lease: Lease,
): Promise<ChargeOutcome> {
  const { client, call, em } = deps;
  const token = cmd.sealedSource ?? cmd.source ?? null;
  const id = cmd.orderUuid;
  if (!lease) {
    const row = await read(em, id);
    const done = row && settled(row);
    if (done) return done;
  }
  if (cmd.amount === 0) return { type: 'charged', chargeId: null, amount: 0 };
  if (!token) return { type: 'payment-failed', reason: 'PAYMENT_FAILED', detail: 'the order has no payment token' };
  if (lease?.again) {
    // An earlier attempt may have charged: ask before charging again.
    const found = await call(() => client.findCharges(id));
    const ok = found.find((c) => c.status === 'succeeded');
    if (ok) return { type: 'charged', chargeId: ok.id, amount: ok.amount };
    if (found.some((c) => c.status === 'failed')) return { type: 'payment-failed', reason: 'PAYMENT_DECLINED', detail: 'card declined' };
  }
  const source = openSource(deps.sealer, id, token);
  // The detail goes into the saga's reply, its row and the order's mails; an error's
  // message into the logs and the DLQ: neither may carry the token back.
  try {
    const r = await call(() => client.charge({ amount: cmd.amount, currency: cmd.currency, source, reference: id }, `charge:${id}`));
    if (r.outcome === 'ok') return { type: 'charged', chargeId: r.charge.id, amount: r.charge.amount };
    return { type: 'payment-failed', reason: 'PAYMENT_DECLINED', detail: mask(`${r.code}: ${r.message}`, source) };
  } catch (err) {
    if (err instanceof GatewayRejectedError) {
      return { type: 'payment-failed', reason: 'PAYMENT_FAILED', detail: mask(err.message, source) };
    }
    const message = (err as Error)?.message;
    if (typeof message === 'string' && message.includes(source)) (err as Error).message = mask(message, source);
    throw err;
  }
}

/** Persist charge outcomes (in the handler's transaction), one statement for all. A CANCELLED row stays cancelled. */
export async function recordCharges(em: EntityManager, done: { cmd: { orderUuid: string; amount: number; currency: string }; outcome: ChargeOutcome }[]): Promise<void> {
  if (!done.length) return;
  const status = (o: ChargeOutcome) => o.type === 'charged' ? 'CHARGED' : o.reason === 'PAYMENT_DECLINED' ? 'DECLINED' : o.reason === 'PAYMENT_FAILED' ? 'FAILED' : 'CANCELLED';
  await em.execute(
    `insert into payments.payments (order_id, status, amount, currency, charge_id, detail, lease_until) values ${done.map(() => '(?, ?, ?, ?, ?, ?, null)').join(', ')}
     on conflict (order_id) do update set status = excluded.status, charge_id = coalesce(excluded.charge_id, payments.payments.charge_id),
       detail = excluded.detail, lease_until = null, updated_at = now()
     where payments.payments.status = 'CHARGING'`,
    done.flatMap(({ cmd, outcome: o }) => [cmd.orderUuid, status(o), cmd.amount, cmd.currency, o.type === 'charged' ? o.chargeId : null, o.type === 'payment-failed' ? o.detail : null]));
}

/**
 * Cancel the order's payment and refund every succeeded charge for it. Returns the
 * amount refunded by this call and before. Throws RetryLaterError while a charge
 * call may still be out.
 */
export async function refundOrder(deps: { client: GatewayClient; call: GatewayCall; em: EntityManager }, orderUuid: string): Promise<number> {
  const { client, call, em } = deps;
  const cancelled = await em.fork().transactional(async (tx) => {
    const row = await read(tx, orderUuid, true);
    if (row?.status === 'CHARGING' && row.lease_until && new Date(row.lease_until).getTime() > Date.now()) {
      return new Date(row.lease_until).getTime() - Date.now();
    }
    await tx.execute(
      `insert into payments.payments (order_id, status) values (?, 'CANCELLED')
       on conflict (order_id) do update set status = 'CANCELLED', lease_until = null, updated_at = now()`, [orderUuid]);
    return 0;
  });
  if (cancelled > 0) throw new RetryLaterError(Math.min(cancelled + 200, 30_000), 'a charge call may still be out; refund after it settles');

  const row = await read(em, orderUuid);
  const charges: GatewayCharge[] = await call(() => client.findCharges(orderUuid));
  const ids = new Set(charges.filter((c) => c.status === 'succeeded').map((c) => c.id));
  // A charge we recorded but the look-up missed is refunded too.
  if (row?.charge_id && !ids.has(row.charge_id) && (row.amount ?? 0) > 0) charges.push({ id: row.charge_id, status: 'succeeded', amount: row.amount!, currency: '', reference: orderUuid });
  const done = new Set((await em.execute<{ charge_id: string }[]>('select charge_id from payments.refunds where order_id = ?', [orderUuid])).map((r) => r.charge_id));
  let total = 0;
  for (const ch of charges) {
    if (ch.status !== 'succeeded') continue;
    if (done.has(ch.id)) { total += ch.amount; continue; }
    let refundId: string | null = null;
    try {
      const r = await call(() => client.refund({ charge: ch.id, amount: ch.amount }, `refund:${ch.id}`));
      refundId = r.refund.id;
    } catch (err) {
      // Refunded before by someone who did not record it (a crash after the refund): nothing left to give back.
      if (!(err instanceof GatewayRejectedError && err.status === 400 && /exceed|refunded/i.test(err.code + err.message))) {
        if (err instanceof GatewayRejectedError) throw new NonRetryableError(`refund of ${ch.id} refused: ${err.message}`, { cause: err });
        throw err;
      }
    }
    await em.execute('insert into payments.refunds (charge_id, order_id, refund_id, amount) values (?, ?, ?, ?) on conflict do nothing', [ch.id, orderUuid, refundId, ch.amount]);
    total += ch.amount;
  }
  return total;
}
