// Catalog: products with full-text search and keyset pagination (/api/products).
import { defineModule } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { catalogRoutes } from './routes.ts';
import { entities, migrations } from './entities.ts';

export { entities, migrations };

export async function start({ routes, orm, nats }: Deps): Promise<Running> {
  catalogRoutes(routes, { orm, nats });
  return { async stop() {} };
}

/** The `catalog` target. Asks inventory for stock rows by core NATS request; it emits no events. */
export const module = defineModule({
  name: 'catalog', schema: 'catalog', entities, migrations, start,
  needs: { schemas: [], outboxRelay: false, dlqMover: false, externals: [] },
});
