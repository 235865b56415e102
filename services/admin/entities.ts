// Admin's tables, in schema `admin`: the audit trail of feature flag changes (who, when,
// the definition before and after). The flags themselves live in NATS KV (kit/flags.ts).
import { defineEntity, p } from '@mikro-orm/core';
import type { StoredFlag } from '../kit/index.ts';

export const FlagChange = defineEntity({
  name: 'AdminFlagChange',
  schema: 'admin',
  tableName: 'flag_changes',
  properties: {
    id: p.uuid().primary(),
    flagKey: p.text(),
    /** The KV revision the change wrote: one change per revision, so no write is audited twice. */
    revision: p.bigint('number'),
    actor: p.text(),
    at: p.datetime(),
    before: p.json<StoredFlag>().nullable(),
    after: p.json<StoredFlag>(),
  },
  uniques: [{ name: 'flag_changes_flag_key_revision_key', properties: ['flagKey', 'revision'] }],
  indexes: [{ name: 'flag_changes_flag_key_at', properties: ['flagKey', 'at'] }],
});

export const entities = [FlagChange];

export { migrations } from './migrations/index.ts';
