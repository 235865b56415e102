// Funding's settings (FUNDING_* and the contract's PAYMENT_GATEWAY_URL), validated at boot.
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { int, readConfig, url } from '../kit/index.ts';
import { ConfigError } from '../kit/index.ts';
import type { Env } from '../kit/index.ts';

const flag = z.enum(['0', '1', 'true', 'false']).default('0').transform((v) => v === '1' || v === 'true');

const schema = z.object({
  PAYMENT_GATEWAY_URL: url(['http', 'https']),
  /** Risk pool threads; default one per core. */
  FUNDING_RISK_THREADS: int(0, 0, 256),
  /** Linux: nice (0-19) added to the scoring threads' priority (piscina's niceIncrement): above 0 the event loop wins a contended core. */
  FUNDING_RISK_NICE: int(10, 0, 19),
  /** Scoring messages in hand at once; default 2 × threads so a thread never waits for the next task. */
  FUNDING_RISK_CONCURRENCY: int(0, 0, 1024),
  /** High-priority scoring messages in hand at once (their own consumer, so never behind the normal backlog); default = threads. */
  FUNDING_RISK_HIGH_CONCURRENCY: int(0, 0, 1024),
  /**
   * Pool threads a normal application never takes, kept free for high-priority ones. Default: 1 from
   * 3 threads up, 0 below (on 2 cores a reserved thread would halve normal throughput, and a high one
   * already goes first to the next free thread, ~one score's wait).
   */
  FUNDING_RISK_HIGH_RESERVED: z.coerce.number().int().min(0).max(255).optional(),
  // Consumers share the process's Postgres pool (DB_POOL_MAX) with the API: modest
  // concurrency here keeps connections free for POSTs during a burst.
  /** Applications the router moves per statement (one batch in flight at a time). */
  FUNDING_ROUTER_BATCH: int(64, 1, 1000),
  FUNDING_DISBURSE_CONCURRENCY: int(8, 1, 1000),
  FUNDING_GATEWAY_TIMEOUT_MS: int(10_000, 100),
  FUNDING_BREAKER_RESET_MS: int(10_000, 100),
  /** After a payout attempt whose outcome is unknown, send again only if a look-up this long after it finds nothing. */
  FUNDING_PAYOUT_RESEND_AFTER_MS: int(5000, 0),
  /** How often the reconciler looks for stuck applications; 0 turns it off. */
  FUNDING_RECONCILE_INTERVAL_MS: int(30_000, 0),
  /** An application in a non-final status unchanged for this long is stuck. */
  FUNDING_STUCK_AFTER_MS: int(300_000, 100),
  /** GET .../status gives up on the KV status cache after this long and reads Postgres (it must answer within 250 ms). */
  FUNDING_STATUS_CACHE_TIMEOUT_MS: int(100, 1, 10_000),
  /** SSE and WebSocket: while NATS is down, how often the status hub re-reads the watched applications from Postgres (one statement for all of them). */
  FUNDING_SSE_POLL_MS: int(2000, 50),
  /** Test hook: purpose "__crash_worker__" kills the scoring thread, "__crash_worker_throw__" makes it throw. Never in production. */
  FUNDING_DEBUG_CRASH: flag,
});

export type FundingConfig = Omit<z.infer<typeof schema>, 'PAYMENT_GATEWAY_URL' | 'FUNDING_RISK_HIGH_RESERVED'> & { PAYMENT_GATEWAY_URL: string | undefined; FUNDING_RISK_HIGH_RESERVED: number };

/** `const config = loadFundingConfig(deps.env, deps.endpoints.gateway)` */
export function loadFundingConfig(env: Env, fallbackGatewayUrl?: string): FundingConfig {
  const c = readConfig(schema, { ...env, PAYMENT_GATEWAY_URL: env.PAYMENT_GATEWAY_URL || fallbackGatewayUrl });
  const threads = c.FUNDING_RISK_THREADS || availableParallelism();
  return {
    ...c, FUNDING_RISK_THREADS: threads, FUNDING_RISK_CONCURRENCY: c.FUNDING_RISK_CONCURRENCY || 2 * threads,
    FUNDING_RISK_HIGH_CONCURRENCY: c.FUNDING_RISK_HIGH_CONCURRENCY || threads,
    FUNDING_RISK_HIGH_RESERVED: Math.min(threads - 1, c.FUNDING_RISK_HIGH_RESERVED ?? (threads >= 3 ? 1 : 0)),
  };
}

/** The gateway URL is needed only by the parts that pay out. */
export function requireGatewayUrl(c: FundingConfig): string {
  if (!c.PAYMENT_GATEWAY_URL) throw new ConfigError('PAYMENT_GATEWAY_URL is required for the funding service (unset, npm start runs the in-repo simulator)');
  return c.PAYMENT_GATEWAY_URL;
}
