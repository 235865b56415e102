// piscina worker entry: runs in a worker thread, loaded by filename from
// risk-pool.ts. Node 24 strips the types itself, so this .ts file is loaded as is.
import { scoreApplication, type RiskInput, type RiskResult } from './risk-model.ts';

/** Score one application inside a worker thread. `await pool.run(input) // RiskResult` */
export default function scoreInWorker(input: RiskInput): RiskResult {
  // Test hook: the funding service sets debugCrash only behind an env guard.
  if (input.debugCrash === 'throw') throw new Error(`debugCrash=throw requested for application ${input.applicationId}`);
  // In a worker thread process.exit() ends only this thread, which is exactly
  // the crash piscina must survive.
  if (input.debugCrash === 'exit') process.exit(1);
  return scoreApplication(input);
}
