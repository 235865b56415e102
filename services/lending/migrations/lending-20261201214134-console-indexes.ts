// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('lending-20261201214134-console-indexes', [
  `create index "orders_created_at" on "lending"."orders" ("created_at", "id")`,
], {
  down: [
    `drop index "lending"."orders_created_at"`,
  ],
});
