import { z } from 'zod';
import { ConfigError, int, readConfig, url } from '../kit/index.ts';
import type { Env } from '../kit/index.ts';

const schema = z.object({
  T24_URL: url(['http', 'https']),
  /** T24's cap, summed over every replica of the cluster. */
  T24_MAX_RPS: int(50, 1, 100_000),
  T24_TIMEOUT_MS: int(5000, 100, 120_000),
  /**
   * How long the breaker stays open before a trial call. Short: an outage costs
   * its own length plus up to this, and a failed trial costs one call.
   */
  T24_BREAKER_RESET_MS: int(2000, 100, 600_000),
  /**
   * The breaker opens when, among the last 2 × T24_BREAKER_MIN_LOANS calls of the
   * last 10 s (at least T24_BREAKER_VOLUME of them), this share (percent) failed and
   * the failures span at least T24_BREAKER_MIN_LOANS distinct loans: a few loans
   * that always fail are theirs, not an outage (outage.ts).
   */
  T24_BREAKER_ERROR_PCT: int(50, 1, 100),
  T24_BREAKER_VOLUME: int(10, 1, 1_000_000_000),
  T24_BREAKER_MIN_LOANS: int(25, 1, 100_000),
  /** After a 5xx, timeout or dropped connection: send the same move again (one call) or read the loan back first. */
  T24_AFTER_AMBIGUOUS: z.enum(['resend', 'readback']).default('resend'),
  /** Rate-share heartbeat; the t24-members bucket's TTL must be several of these. */
  T24_HEARTBEAT_MS: int(1000, 50, 10_000),
  /** Extra spacing between calls, in percent of 1000/share, for clock and network jitter between us and T24. */
  T24_RATE_MARGIN_PCT: int(5, 0, 100),
  LENDING_BATCH_SIZE: int(1000, 1, 10_000),
  /** Most item messages one replica holds at once (the harness's prefetch). */
  LENDING_ITEM_PREFETCH: int(256, 1, 4096),
  /**
   * An item's own T24 failures (5xx, timeouts, dropped connections) until the DLQ;
   * open-breaker waits, failures the breaker judged an outage and 429s do not count.
   * With the defaults below the seed's backoff: 1 s, 2 s, 4 s, 8 s, then the DLQ.
   */
  LENDING_ITEM_MAX_FAILURES: int(5, 1, 1000),
  LENDING_RETRY_BASE_MS: int(1000, 1, 600_000),
  LENDING_RETRY_MAX_MS: int(8000, 1, 3_600_000),
});

export type LendingConfig = z.infer<typeof schema> & { T24_URL: string };

/** T24_URL may come from the simulator main.ts started; it is required by then. */
export function loadLendingConfig(env: Env, fallbackT24Url?: string): LendingConfig {
  const c = readConfig(schema, { ...env, T24_URL: env.T24_URL || fallbackT24Url });
  if (!c.T24_URL) throw new ConfigError('invalid configuration:\n  T24_URL: required for the lending service (unset, npm start runs the in-repo T24 simulator outside production)');
  return c as LendingConfig;
}
