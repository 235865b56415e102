// Catalog: products with full-text search and keyset pagination (/api/products).
import type { Deps, Running } from '../kit/index.ts';
import { catalogRoutes } from './routes.ts';

export { entities, migrations } from './entities.ts';

export async function start({ app, orm, nats }: Deps): Promise<Running> {
  app.route('/api/products', catalogRoutes({ orm, nats }));
  return { async stop() {} };
}
