// Production mode (ORDERFLOW_ENV=production, CONTRACTS.md "Running the cluster"): no
// simulator stands in for an external system and no development secret for a real one.
// Checked before anything connects, so one failed start names everything that is missing.
import { ConfigError } from './errors.ts';
import { EXTERNAL_URL_VARS, type ModulePlan } from './modules.ts';
import type { Env } from './service.ts';

/**
 * What production lacks for these targets: the URL of every external system they call and
 * every secret they read, each unset or empty. `missingForProduction(env, plan) // ['SMTP_URL', 'KEY_ENCRYPTION_KEY']`
 */
export function missingForProduction(env: Env, plan: Pick<ModulePlan, 'externals' | 'secrets'>): string[] {
  const wanted = [...plan.externals.map((e) => EXTERNAL_URL_VARS[e]), ...plan.secrets];
  return [...new Set(wanted)].filter((name) => !env[name]?.trim());
}

/** Throws one ConfigError naming every missing variable (never a value). `assertProductionReady(env, plan)` */
export function assertProductionReady(env: Env, plan: Pick<ModulePlan, 'targets' | 'externals' | 'secrets'>): void {
  const missing = missingForProduction(env, plan);
  if (!missing.length) return;
  const lines = missing.map((name) => `  ${name}: required when ORDERFLOW_ENV=production (${Object.values(EXTERNAL_URL_VARS).includes(name) ? 'production starts no simulator' : 'production has no development stand-in'})`);
  throw new ConfigError(`invalid configuration for TARGET=${plan.targets.join(',')}:\n${lines.join('\n')}`);
}
