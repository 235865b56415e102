// piscina worker entry: runs in a worker thread, loaded by filename from
// risk-pool.ts. Node 24 strips the types itself, so this .ts file is loaded as is.
import { scoreApplication, type RiskInput, type RiskResult } from './risk-model.ts';

/**
 * A task as the pool sends it: the input, and `progress` in memory shared with the pool,
 * set to STARTED while the model runs and DONE once it returned. A thread holds a second
 * task while it runs one (risk-pool.ts), so when it dies the pool reads this to tell the
 * task that was running (its input crashed it) from the one waiting or already answered.
 */
export type WorkerTask = RiskInput & { progress?: Int32Array };
export const STARTED = 1;
export const DONE = 2;

/** Score one application inside a worker thread. `await pool.run(task) // RiskResult` */
export default function scoreInWorker(task: WorkerTask): RiskResult {
  const { progress, ...input } = task;
  if (progress) Atomics.store(progress, 0, STARTED);
  // Test hook: the funding service sets debugCrash only behind an env guard.
  if (input.debugCrash === 'throw') throw new Error(`debugCrash=throw requested for application ${input.applicationId}`);
  // In a worker thread process.exit() ends only this thread, which is exactly
  // the crash piscina must survive.
  if (input.debugCrash === 'exit') process.exit(1);
  const result = scoreApplication(input);
  if (progress) Atomics.store(progress, 0, DONE);
  return result;
}
