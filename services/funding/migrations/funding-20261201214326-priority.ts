// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('funding-20261201214326-priority', [
  `alter table "funding"."applications" add "priority" text not null default 'normal'`,
  `alter table "funding"."applications" add constraint "applications_priority_check" check (priority in ('normal', 'high'))`,
], {
  down: [
    `alter table "funding"."applications" drop constraint "applications_priority_check"`,
    `alter table "funding"."applications" drop column "priority"`,
  ],
});
