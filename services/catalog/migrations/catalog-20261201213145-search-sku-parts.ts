// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
// Edited: dropping the column drops its GIN index, which the diff did not recreate.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('catalog-20261201213145-search-sku-parts', [
  `alter table "catalog"."products" drop column "search"`,
  `alter table "catalog"."products" add "search" tsvector generated always as ((setweight(to_tsvector('simple'::regconfig, ((sku || ' '::text) || regexp_replace(sku, '[^[:alnum:]]+'::text, ' '::text, 'g'::text))), 'A'::"char") || setweight(to_tsvector('english'::regconfig, name), 'A'::"char")) || setweight(to_tsvector('english'::regconfig, description), 'B'::"char")) stored null`,
  `create index "products_search" on "catalog"."products" using gin ("search")`,
], {
  down: [
    `alter table "catalog"."products" drop column "search"`,
    `alter table "catalog"."products" add "search" tsvector generated always as ((setweight(to_tsvector('simple'::regconfig, sku), 'A'::"char") || setweight(to_tsvector('english'::regconfig, name), 'A'::"char")) || setweight(to_tsvector('english'::regconfig, description), 'B'::"char")) stored null`,
    `create index "products_search" on "catalog"."products" using gin ("search")`,
  ],
});
