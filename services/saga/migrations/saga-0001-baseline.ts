// Generated from the entities by services/kit/migrations-cli.ts; edit only to make a step safe on live data.
import { sqlMigration } from '../../kit/index.ts';

export default sqlMigration('saga-0001-baseline', [
  `create schema if not exists "saga"`,
  `create table "saga"."sagas" ("id" uuid not null, "step" text not null, "status" text not null, "version" int not null, "deadline" timestamptz null, "doc" jsonb not null, "created_at" timestamptz not null default now(), "updated_at" timestamptz not null default now(), primary key ("id"))`,
  `create index "sagas_deadline" on "saga"."sagas" ("deadline") where deadline is not null`,
  `create index "sagas_step" on "saga"."sagas" ("step") where step = 'COMPENSATING'`,
], {
  down: [
    `drop table if exists "saga"."sagas" cascade`,
    `drop schema if exists "saga"`,
  ],
  replaces: ['saga-0001-init'],
});
