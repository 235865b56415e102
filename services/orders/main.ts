// Orders: accepts orders over HTTP; the order and its `orders.created` event commit together.
import type { Deps, Running } from '../kit/service.ts';
import { orderRoutes } from './routes.ts';

export { entities, migrations } from './entities.ts';

export async function start({ app, orm }: Deps): Promise<Running> {
  app.route('/api/orders', orderRoutes({ orm }));
  return { async stop() {} };
}
