// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('payments-20261201214146-console-indexes', [
  `create index "refunds_order_id" on "payments"."refunds" ("order_id")`,
], {
  down: [
    `drop index "payments"."refunds_order_id"`,
  ],
});
