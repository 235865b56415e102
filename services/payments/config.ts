// Payments' settings (PAYMENTS_* and the contract's PAYMENT_GATEWAY_URL), validated at boot.
import { z } from 'zod';
import { int, readConfig, url } from '../kit/index.ts';
import { ConfigError } from '../kit/index.ts';
import type { Env } from '../kit/index.ts';

const schema = z.object({
  PAYMENT_GATEWAY_URL: url(['http', 'https']),
  PAYMENTS_CONCURRENCY: int(32, 1, 1000),
  PAYMENTS_RETRY_BASE_MS: int(500, 1),
  PAYMENTS_RETRY_MAX_MS: int(30_000, 1),
  PAYMENTS_TIMEOUT_MS: int(10_000, 100),
  PAYMENTS_BREAKER_ERROR_PCT: int(50, 1, 100),
  PAYMENTS_BREAKER_VOLUME: int(10, 1),
  PAYMENTS_BREAKER_RESET_MS: int(5_000, 100),
});

export type PaymentsConfig = z.infer<typeof schema> & { PAYMENT_GATEWAY_URL: string };

/** `const config = loadPaymentsConfig(deps.env, deps.endpoints.gateway)`: the gateway URL may come from the simulator main.ts started. */
export function loadPaymentsConfig(env: Env, fallbackGatewayUrl?: string): PaymentsConfig {
  const c = readConfig(schema, { ...env, PAYMENT_GATEWAY_URL: env.PAYMENT_GATEWAY_URL || fallbackGatewayUrl });
  if (!c.PAYMENT_GATEWAY_URL) throw new ConfigError('PAYMENT_GATEWAY_URL is required for the payments service');
  return c as PaymentsConfig;
}
