// Saga: the orchestrator of the commerce flow (see saga.ts for the state machine).
import { z } from 'zod';
import { int, readConfig } from '../kit/index.ts';
import { defineModule } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { startOrchestrator } from './orchestrator.ts';
import { entities, migrations } from './entities.ts';

export { entities, migrations };

const configSchema = z.object({
  /** Messages that arrive together share one transaction, up to this many. */
  SAGA_BATCH: int(64, 1, 1000),
  SAGA_RETRY_BASE_MS: int(200, 1),
  /** How long a forward step may stay unanswered before its command is sent again. */
  SAGA_STEP_TIMEOUT_MS: int(30_000, 100),
  SAGA_STEP_TIMEOUT_MAX_MS: int(300_000, 100),
  /** Sends of one step's command before the step counts as failed and is compensated. */
  SAGA_MAX_STEP_ATTEMPTS: int(5, 1, 100),
  SAGA_SWEEP_MS: int(1000, 50),
});

export async function start(deps: Deps): Promise<Running> {
  const c = readConfig(configSchema, deps.env);
  const orchestrator = await startOrchestrator(deps, {
    batch: c.SAGA_BATCH, retryBaseMs: c.SAGA_RETRY_BASE_MS, sweepMs: c.SAGA_SWEEP_MS,
    stepTimeoutMs: c.SAGA_STEP_TIMEOUT_MS, maxStepTimeoutMs: c.SAGA_STEP_TIMEOUT_MAX_MS, maxStepAttempts: c.SAGA_MAX_STEP_ATTEMPTS,
  });
  return { stop: () => orchestrator.stop() };
}

/** The `saga` target. Step commands leave through the outbox. */
export const module = defineModule({
  name: 'saga', schema: 'saga', entities, migrations, start,
  needs: { schemas: [], outboxRelay: true, dlqMover: false, externals: [] },
});
