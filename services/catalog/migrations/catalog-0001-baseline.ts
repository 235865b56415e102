// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('catalog-0001-baseline', [
  `create schema if not exists "catalog"`,
  `create table "catalog"."products" ("sku" text not null, "name" text not null, "description" text not null default '', "price_cents" int not null, "currency" text not null, "created_at" timestamptz not null default now(), "search" tsvector generated always as ((setweight(to_tsvector('simple'::regconfig, sku), 'A'::"char") || setweight(to_tsvector('english'::regconfig, name), 'A'::"char")) || setweight(to_tsvector('english'::regconfig, description), 'B'::"char")) stored null, primary key ("sku"))`,
  `create index "products_search" on "catalog"."products" using gin ("search")`,
  `alter table "catalog"."products" add constraint "products_price_cents_check" check (price_cents >= 0)`,
], {
  down: [
    `drop table if exists "catalog"."products" cascade`,
    `drop schema if exists "catalog"`,
  ],
  replaces: ['catalog-0001-init'],
});
