// How long to wait before trying again: our own exponential backoff, and what a server
// asks for in Retry-After. One copy each, for the delivery core, the outbox relay, the
// saga's step timeouts, and the T24, payment gateway and SMS clients.

export type RetryPolicy = {
  baseMs: number;
  factor?: number;
  maxMs?: number;
  /**
   * A share (0.2 = ±20% around the exponential step, the default), or 'full': anywhere
   * in [0, step), which spreads callers that failed together the furthest apart.
   */
  jitter?: number | 'full';
};

/** Delay before attempt `attempt + 1`, exponential with jitter. `backoff({ baseMs: 1000 }, 3) ≈ 4000`; `backoff({ baseMs: 200, maxMs: 2000, jitter: 'full' }, 2) < 400` */
export function backoff(p: RetryPolicy, attempt: number, random = Math.random): number {
  const raw = Math.min(p.maxMs ?? 60_000, p.baseMs * (p.factor ?? 2) ** Math.max(0, attempt - 1));
  if (p.jitter === 'full') return Math.max(0, Math.round(raw * random()));
  const j = p.jitter ?? 0.2;
  return Math.max(0, Math.round(raw * (1 - j + 2 * j * random())));
}

// delta-seconds (RFC 9110 says whole seconds; a fraction is taken as meant) or an
// HTTP-date, which starts with a day name in all three of its allowed forms. Anything
// else (Number() would take '0x10', '1e3', ' ' and '-5'; Date.parse takes '12') is not
// a Retry-After.
const SECONDS = /^\d+(\.\d+)?$/;
const HTTP_DATE = /^(mon|tue|wed|thu|fri|sat|sun)[a-z]*,? /i;

/**
 * A Retry-After header as ms from `now`, within [0, maxMs] (default 10 minutes: a server
 * that asks for an hour must not park our work that long), or undefined when it is
 * absent or not a Retry-After. `parseRetryAfter('2') === 2000`; `parseRetryAfter('soon') === undefined`
 */
export function parseRetryAfter(header: string | null | undefined, o: { now?: number; maxMs?: number } = {}): number | undefined {
  const value = header?.trim();
  if (!value) return undefined;
  const maxMs = o.maxMs ?? 600_000;
  let ms: number;
  if (SECONDS.test(value)) ms = Number(value) * 1000;
  else if (HTTP_DATE.test(value)) {
    const at = Date.parse(value);
    if (Number.isNaN(at)) return undefined;
    ms = at - (o.now ?? Date.now());
  } else return undefined;
  return Math.min(maxMs, Math.max(0, Math.round(ms)));
}
