// Inventory's settings (INVENTORY_*), validated at boot.
import { z } from 'zod';
import { int, readConfig } from '../kit/index.ts';
import type { Env } from '../kit/index.ts';

const schema = z.object({
  INVENTORY_BATCH: int(64, 1, 1000),
  INVENTORY_RETRY_BASE_MS: int(500, 1),
});

export type InventoryConfig = z.infer<typeof schema>;

/** `const config = loadInventoryConfig(deps.env)` */
export const loadInventoryConfig = (env: Env): InventoryConfig => readConfig(schema, env);
