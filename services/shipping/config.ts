// Shipping's settings (SHIPPING_*), validated at boot.
import { z } from 'zod';
import { int, readConfig } from '../kit/index.ts';
import type { Env } from '../kit/index.ts';

const schema = z.object({
  SHIPPING_FAIL_SKU_PREFIX: z.string().default('NOSHIP-'),
  SHIPPING_FAIL_RATE: z.coerce.number().min(0).max(1).default(0),
  SHIPPING_BATCH: int(64, 1, 1000),
  SHIPPING_RETRY_BASE_MS: int(500, 1),
});

export type ShippingConfig = z.infer<typeof schema>;

/** `const config = loadShippingConfig(deps.env)` */
export const loadShippingConfig = (env: Env): ShippingConfig => readConfig(schema, env);
