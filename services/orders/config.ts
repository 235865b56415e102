import { z } from 'zod';
import { int, readConfig } from '../kit/index.ts';
import type { Logger } from '../kit/index.ts';
import { paymentTokenSealer, type Sealer } from '../kit/index.ts';
import type { Env } from '../kit/index.ts';

const schema = z.object({
  // Group commit (orders.ts): one intake statement in flight at a time makes the batches
  // largest; measured on 2 cores, 1 beats 2, 4 or 8 by a wide margin (docs/benchmarks.md).
  ORDERS_WRITE_CONCURRENCY: int(1, 1, 64),
  ORDERS_WRITE_BATCH: int(256, 1, 5000),
});

// The sealer comes from PAYMENT_TOKEN_KEY (kit/seal.ts): intake seals every payment token
// before it is stored or published; only payments opens it (right before the gateway call).
export type OrdersConfig = z.infer<typeof schema> & { sealer: Sealer };
export const loadOrdersConfig = (env: Env, log: Logger): OrdersConfig => ({ ...readConfig(schema, env), sealer: paymentTokenSealer(env, log) });
