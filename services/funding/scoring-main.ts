// The `funding-scoring` target: the risk scoring consumer and its piscina pool.
// It owns no tables: it reads and updates funding.applications (applications.ts), so
// its process migrates the `funding` schema with the funding target's migrations.
import { FundingBuckets, FundingSubjects } from '../../contracts/funding.ts';
import { defineModule } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { startScoringConsumer } from './consumers.ts';
import { createStatusCache, statusRelayHook } from './status-cache.ts';
import { scoringPlacement, serveSupervisor, superviseScoringProcess } from './scoring-process.ts';

export const entities = [];
export const migrations = [];

/**
 * The pool and its consumers in this process, or (TARGET=all, or FUNDING_SCORING_PROCESS=child)
 * in a supervised child process of their own (scoring-process.ts for why).
 */
export async function start(deps: Deps): Promise<Running> {
  // A decision's status event leaves through this process's relay, which writes the status cache as it does.
  deps.onRelay(FundingSubjects.statusUpdated, statusRelayHook(createStatusCache(await deps.kvm.open(FundingBuckets.status, { allow_direct: true })), deps.log));
  if (scoringPlacement(deps.env, deps.config.TARGET) === 'child') return await superviseScoringProcess(deps);
  const scoring = await startScoringConsumer(deps);
  const unserve = serveSupervisor(deps.env, deps.metrics.registry);
  return {
    async stop() {
      unserve();
      await scoring.stop();
    },
  };
}

/**
 * The `funding-scoring` target. A decision's events (risk-scoring completed, status,
 * disbursement request) are outbox rows written with the transition: the relay of this
 * process publishes them as the transition commits, not the funding process's next poll.
 * It calls no external system and mounts no routes (HTTP serves only health and metrics).
 */
export const module = defineModule({
  name: 'funding-scoring', entities, migrations, start,
  needs: { schemas: ['funding'], outboxRelay: true, dlqMover: false, externals: [], relayHooks: [FundingSubjects.statusUpdated] },
});
