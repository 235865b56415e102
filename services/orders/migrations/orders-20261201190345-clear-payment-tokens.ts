// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('orders-20261201190345-clear-payment-tokens', [
  `create index "orders_clear_payment_token" on "orders"."orders" ("id") where payment_token is not null and payment_token not like 'v1.%'`,
], {
  down: [
    `drop index "orders"."orders_clear_payment_token"`,
  ],
});
