// Saga: the orchestrator of the commerce flow (see saga.ts for the state machine, consumers.ts for its mailboxes).
import { defineModule } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { loadSagaConfig } from './config.ts';
import { startSagaConsumers } from './consumers.ts';
import { entities, migrations } from './entities.ts';

export { entities, migrations };

export async function start(deps: Deps): Promise<Running> {
  const c = loadSagaConfig(deps.env);
  const consumers = await startSagaConsumers(deps, {
    batch: c.SAGA_BATCH, retryBaseMs: c.SAGA_RETRY_BASE_MS, sweepMs: c.SAGA_SWEEP_MS,
    stepTimeoutMs: c.SAGA_STEP_TIMEOUT_MS, maxStepTimeoutMs: c.SAGA_STEP_TIMEOUT_MAX_MS, maxStepAttempts: c.SAGA_MAX_STEP_ATTEMPTS,
  });
  return { stop: () => consumers.stop() };
}

/** The `saga` target. Step commands leave through the outbox. */
export const module = defineModule({
  name: 'saga', schema: 'saga', entities, migrations, start,
  needs: { schemas: [], outboxRelay: true, dlqMover: false, externals: [] },
});
