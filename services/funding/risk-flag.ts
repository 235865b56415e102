// The flag `funding.riskModel` (CONTRACTS.md "Feature flags"): its variants are risk
// model versions, and the application's businessId is the targeting key, so a business
// keeps its model through a rollout (10% → 50% → 100%), and rolling back is one change
// (rolloutPercent 0, or enabled false). The scoring consumer evaluates it per application
// when it scores; evaluation is in memory (kit/flags.ts), so a change reaches every
// scoring replica as fast as the KV watch delivers it.
import type { Client } from '@openfeature/server-sdk';
import type { FlagSeed } from '../kit/index.ts';
import { isModelVersion, MODEL_VERSION, MODEL_VERSION_V2 } from './risk-model.ts';

export const RISK_MODEL_FLAG = 'funding.riskModel';

/**
 * Created at start-up when the bucket has no definition; an operator's change is never
 * overwritten. A bucket seeded before 2.0 existed holds `on: cashflow-mc-1.0`: an operator
 * rolls 2.0 out there by PUTting the variants once.
 */
export const riskModelFlag: FlagSeed = {
  key: RISK_MODEL_FLAG,
  enabled: false,
  rolloutPercent: 0,
  variants: { off: MODEL_VERSION, on: MODEL_VERSION_V2 },
  description: 'Risk model version that scores a funding application; targeting key: businessId. off = current model, on = the model being rolled out.',
};

export type RiskModelPicker = {
  /** The flag's variant for this business as written (the default model when the flag is missing or unreadable). */
  riskModelVersion(businessId: string): Promise<string>;
  /**
   * The version to score with: the variant when this build has that model, else the default
   * model, with `unknown` naming the variant it could not use (an operator's typo must not
   * stop scoring). Never throws.
   */
  pick(businessId: string): Promise<{ version: string; unknown?: string }>;
};

/** `const { pick } = riskModelPicker(deps.flags.client); (await pick('biz-42')).version // 'cashflow-mc-1.0'` */
export function riskModelPicker(client: Client): RiskModelPicker {
  const riskModelVersion = async (businessId: string) => await client.getStringValue(RISK_MODEL_FLAG, MODEL_VERSION, { targetingKey: businessId });
  return {
    riskModelVersion,
    async pick(businessId) {
      const v = await riskModelVersion(businessId);
      return isModelVersion(v) ? { version: v } : { version: MODEL_VERSION, unknown: v };
    },
  };
}
