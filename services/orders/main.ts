// Orders: accepts orders over HTTP; the order and its `orders.created` event commit together.
// Its status, history and totals then follow the saga's status events (consumers.ts).
import { defineModule } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { loadOrdersConfig } from './config.ts';
import { sealClearTokens } from './orders.ts';
import { orderRoutes } from './routes.ts';
import { startStatusProjection } from './consumers.ts';
import { entities, migrations } from './entities.ts';

export { entities, migrations };

export async function start(deps: Deps): Promise<Running> {
  const config = loadOrdersConfig(deps.env, deps.log);
  // An upgrade from before sealing: the tokens stored in clear are sealed now. A failure
  // leaves them for the next start and does not keep the service down.
  const sealed = await sealClearTokens(deps.orm, config.sealer)
    .catch((err) => { deps.log.warn({ err: String(err) }, 'sealing payment tokens stored in clear failed; will try at the next start'); return 0; });
  if (sealed) deps.log.info({ sealed }, 'sealed payment tokens stored in clear before this release');
  orderRoutes(deps.routes, { orm: deps.orm, wakeOutbox: deps.wakeOutbox, config });
  const projection = await startStatusProjection(deps);
  return { async stop() { await projection.stop(); } };
}

/** The `orders` target. An order and its `orders.created` event commit together. */
export const module = defineModule({
  name: 'orders', schema: 'orders', entities, migrations, start,
  needs: { schemas: [], outboxRelay: true, dlqMover: false, externals: [], secrets: ['PAYMENT_TOKEN_KEY'] },
});
