// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('orders-20261201220143-owner', [
  `alter table "orders"."orders" add "owner" text null`,
], {
  down: [
    `alter table "orders"."orders" drop column "owner"`,
  ],
});
