// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('orders-20261201214103-console-indexes', [
  `create index "orders_created_at" on "orders"."orders" ("created_at", "id")`,
  `create index "orders_status_created_at" on "orders"."orders" ("status", "created_at", "id")`,
  `create index "orders_email_created_at" on "orders"."orders" ("email", "created_at", "id")`,
  `create index "orders_updated_at" on "orders"."orders" ("updated_at")`,
], {
  down: [
    `drop index "orders"."orders_created_at"`,
    `drop index "orders"."orders_status_created_at"`,
    `drop index "orders"."orders_email_created_at"`,
    `drop index "orders"."orders_updated_at"`,
  ],
});
