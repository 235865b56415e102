// Inventory: on-hand, reserved and available per SKU; the saga's reserve, release
// and deduct commands; the catalog's stock-row requests; /api/inventory.
import { defineModule } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { loadInventoryConfig } from './config.ts';
import { serveInitRequests, startInventoryWorker } from './consumers.ts';
import { inventoryRoutes } from './routes.ts';
import { entities, migrations } from './entities.ts';

export { entities, migrations };

export async function start(deps: Deps): Promise<Running> {
  const config = loadInventoryConfig(deps.env);
  inventoryRoutes(deps.routes, { orm: deps.orm });
  const init = serveInitRequests(deps);
  const worker = await startInventoryWorker(deps, { batch: config.INVENTORY_BATCH, retryBaseMs: config.INVENTORY_RETRY_BASE_MS });
  return {
    async stop() {
      init.stop();
      await worker.stop();
    },
  };
}

/** The `inventory` target. Its replies to the saga leave through the outbox. */
export const module = defineModule({
  name: 'inventory', schema: 'inventory', entities, migrations, start,
  needs: { schemas: [], outboxRelay: true, dlqMover: false, externals: [] },
});
