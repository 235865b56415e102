// The saga's settings (SAGA_*), validated at boot.
import { z } from 'zod';
import { int, readConfig } from '../kit/index.ts';
import type { Env } from '../kit/index.ts';

const schema = z.object({
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

export type SagaServiceConfig = z.infer<typeof schema>;

/** `const config = loadSagaConfig(deps.env)` */
export const loadSagaConfig = (env: Env): SagaServiceConfig => readConfig(schema, env);
