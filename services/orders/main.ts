// Orders: accepts orders over HTTP; the order and its `orders.created` event commit together.
// Its status, history and totals then follow the saga's status events (status.ts).
import type { Deps, Running } from '../kit/index.ts';
import { loadOrdersConfig } from './config.ts';
import { orderRoutes } from './routes.ts';
import { startStatusProjection } from './status.ts';

export { entities, migrations } from './entities.ts';

export async function start(deps: Deps): Promise<Running> {
  const config = loadOrdersConfig(deps.env);
  deps.app.route('/api/orders', orderRoutes({ orm: deps.orm, wakeOutbox: deps.wakeOutbox, config }));
  const projection = await startStatusProjection(deps);
  return { async stop() { await projection.stop(); } };
}
