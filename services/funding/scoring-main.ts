// The `funding-scoring` target: the risk scoring consumer and its piscina pool.
// Tables and migrations belong to the `funding` target (main.ts); this one only reads
// and updates funding.applications through applications.ts.
import type { Deps, Running } from '../kit/index.ts';
import { startScoring } from './scoring.ts';

export const entities = [];
export const migrations = [];

export async function start(deps: Deps): Promise<Running> {
  return await startScoring(deps);
}
