// The kit's tables (schema `kit`: outbox, inbox, Idempotency-Key store) and their migrations,
// generated from kit/entities.ts into kit/migrations/. Services never touch them except through the kit.
export { entities as kitEntities, migrations as kitMigrations } from './entities.ts';
