// The flag `funding.riskModel` (CONTRACTS.md "Feature flags"): its variants are risk
// model versions, and the application's businessId is the targeting key, so a business
// keeps its model through a rollout. Both variants are the current model until a second
// one exists; scoring does not consult the flag yet (the second model's rollout will
// wire `riskModelVersion` into scoring.ts).
import type { Client } from '@openfeature/server-sdk';
import type { FlagSeed } from '../kit/index.ts';
import { MODEL_VERSION } from './risk-model.ts';

export const RISK_MODEL_FLAG = 'funding.riskModel';

/** Created at start-up when the bucket has no definition; an operator's change is never overwritten. */
export const riskModelFlag: FlagSeed = {
  key: RISK_MODEL_FLAG,
  enabled: false,
  rolloutPercent: 0,
  variants: { off: MODEL_VERSION, on: MODEL_VERSION },
  description: 'Risk model version that scores a funding application; targeting key: businessId. off = current model, on = the model being rolled out.',
};

/**
 * The model version that scores a business's applications; the current model when the flag
 * is missing or unreadable (evaluation never throws). `const { riskModelVersion } = riskModelPicker(deps.flags.client)`
 */
export function riskModelPicker(client: Client): { riskModelVersion(businessId: string): Promise<string> } {
  return {
    riskModelVersion: async (businessId) => await client.getStringValue(RISK_MODEL_FLAG, MODEL_VERSION, { targetingKey: businessId }),
  };
}
