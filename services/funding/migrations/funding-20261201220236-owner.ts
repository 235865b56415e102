// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('funding-20261201220236-owner', [
  `alter table "funding"."applications" add "owner" text null`,
], {
  down: [
    `alter table "funding"."applications" drop column "owner"`,
  ],
});
