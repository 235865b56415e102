// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
// Edited: keys stored before this belong to no known principal; they get '' (the anonymous
// one) through a default that is dropped at once, so the column is then set by every writer.
// Down keeps one row per (scope, key) before the old primary key comes back.
import { sqlMigration } from '../db.ts';

export default sqlMigration('0000-kit-20261202005206-idempotency-key-principal', [
  `alter table "kit"."idempotency_keys" drop constraint "idempotency_keys_pkey"`,
  `alter table "kit"."idempotency_keys" add "principal" text not null default ''`,
  `alter table "kit"."idempotency_keys" alter column "principal" drop default`,
  `alter table "kit"."idempotency_keys" add primary key ("scope", "principal", "key")`,
], {
  down: [
    `alter table "kit"."idempotency_keys" drop constraint "idempotency_keys_pkey"`,
    `delete from "kit"."idempotency_keys" a using "kit"."idempotency_keys" b where a.scope = b.scope and a.key = b.key and a.principal > b.principal`,
    `alter table "kit"."idempotency_keys" drop column "principal"`,
    `alter table "kit"."idempotency_keys" add primary key ("scope", "key")`,
  ],
});
