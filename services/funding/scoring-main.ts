// The `funding-scoring` target: the risk scoring consumer and its piscina pool.
// It owns no tables: it reads and updates funding.applications (applications.ts), so
// its process migrates the `funding` schema with the funding target's migrations.
import { defineModule } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { startScoringConsumer } from './consumers.ts';

export const entities = [];
export const migrations = [];

export async function start(deps: Deps): Promise<Running> {
  return await startScoringConsumer(deps);
}

/**
 * The `funding-scoring` target. A decision's events (risk-scoring completed, status,
 * disbursement request) are outbox rows written with the transition: the relay of this
 * process publishes them as the transition commits, not the funding process's next poll.
 * It calls no external system and mounts no routes (HTTP serves only health and metrics).
 */
export const module = defineModule({
  name: 'funding-scoring', entities, migrations, start,
  needs: { schemas: ['funding'], outboxRelay: true, dlqMover: false, externals: [] },
});
