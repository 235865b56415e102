// Shipping: schedules the pickup and issues the tracking number (shipping.cmd.*, consumers.ts).
import { defineModule } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { loadShippingConfig } from './config.ts';
import { startShippingConsumer } from './consumers.ts';
import { entities, migrations } from './entities.ts';

export { entities, migrations };

export async function start(deps: Deps): Promise<Running> {
  const config = loadShippingConfig(deps.env);
  const worker = await startShippingConsumer(deps, config);
  return { async stop() { await worker.stop(); } };
}

/** The `shipping` target. Scheduled and cancelled replies leave through the outbox. */
export const module = defineModule({
  name: 'shipping', schema: 'shipping', entities, migrations, start,
  needs: { schemas: [], outboxRelay: true, dlqMover: false, externals: [] },
});
