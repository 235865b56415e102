// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('funding-20261201214120-console-indexes', [
  `create index "applications_status_created_at" on "funding"."applications" ("status", "created_at", "id")`,
], {
  down: [
    `drop index "funding"."applications_status_created_at"`,
  ],
});
