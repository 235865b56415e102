import { z } from 'zod';
import { int, readConfig, url } from '../kit/index.ts';
import type { Env } from '../kit/index.ts';

const schema = z.object({
  T24_URL: url(['http', 'https']),
  /** T24's cap, summed over every replica of the cluster. */
  T24_MAX_RPS: int(50, 1, 100_000),
  T24_TIMEOUT_MS: int(5000, 100, 120_000),
  /** How long the breaker stays open before a trial call. */
  T24_BREAKER_RESET_MS: int(10_000, 100, 600_000),
  /** The breaker opens when this share (percent) of the calls in its 10 s window failed, once it saw at least T24_BREAKER_VOLUME calls. */
  T24_BREAKER_ERROR_PCT: int(50, 1, 100),
  T24_BREAKER_VOLUME: int(10, 1, 1_000_000_000),
  /** Rate-share heartbeat; the t24-members bucket's TTL must be several of these. */
  T24_HEARTBEAT_MS: int(1000, 50, 10_000),
  /** Extra spacing between calls, in percent of 1000/share, for clock and network jitter between us and T24. */
  T24_RATE_MARGIN_PCT: int(5, 0, 100),
  LENDING_BATCH_SIZE: int(1000, 1, 10_000),
  /** Most item messages one replica holds at once (the harness's prefetch). */
  LENDING_ITEM_PREFETCH: int(256, 1, 4096),
  /** Real T24 failures (5xx, timeouts, dropped connections) an item survives before the DLQ; open-breaker and 429 waits do not count. */
  LENDING_ITEM_MAX_FAILURES: int(12, 1, 1000),
  LENDING_RETRY_BASE_MS: int(1000, 1, 600_000),
  LENDING_RETRY_MAX_MS: int(30_000, 1, 3_600_000),
});

export type LendingConfig = z.infer<typeof schema> & { T24_URL: string };

/** T24_URL may come from the simulator main.ts started; it is required by then. */
export function loadLendingConfig(env: Env, fallbackT24Url?: string): LendingConfig {
  const c = readConfig(schema, { ...env, T24_URL: env.T24_URL || fallbackT24Url });
  if (!c.T24_URL) throw new Error('T24_URL is required for the lending service');
  return c as LendingConfig;
}
