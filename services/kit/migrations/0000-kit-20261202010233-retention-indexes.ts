// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../db.ts';

// `if not exists`: kit.inbox has grown since the first release, and a plain create index
// blocks its inserts (every inbox-guarded consumer) while it builds. On a large table an
// operator builds both first with `create index concurrently if not exists ...` (same names
// and columns; it cannot run inside the migration's transaction), and this step is a no-op.

export default sqlMigration('0000-kit-20261202010233-retention-indexes', [
  `create index if not exists "idempotency_keys_created_at" on "kit"."idempotency_keys" ("created_at")`,
  `create index if not exists "inbox_processed_at" on "kit"."inbox" ("processed_at")`,
], {
  down: [
    `drop index "kit"."idempotency_keys_created_at"`,
    `drop index "kit"."inbox_processed_at"`,
  ],
});
