// Risk scoring: the parts of the `funding-scoring` consumer of
// `funding.risk.scoring.requested` (consumers.ts) that are not the delivery.
// The model runs in the piscina pool (risk-pool.ts), never on this event loop; the
// worker keeps about two messages in hand per thread so a thread finishing a task
// finds the next one already queued. Results are cached in the KV bucket
// `funding-risk-scores` under a hash of the scoring inputs and the model version: the
// model is deterministic in those inputs, so a redelivery, a reconciler re-request or
// a duplicate application costs a KV read instead of tens of ms of CPU, and a new
// model version never reads an old version's scores.
//
// A thread that crashes (or a model that throws) on one input sends that message to
// the DLQ with the error; the pool replaces the thread and the other applications
// carry on. The application stays `risk_scoring` with `scoringError` set (the
// reconciler leaves it alone); a DLQ redrive scores it again.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { MikroORM } from '../kit/index.ts';
import type { Deps } from '../kit/index.ts';
import { MODEL_VERSION, type RiskInput } from './risk-model.ts';

/** Purposes that trigger the crash hook when FUNDING_DEBUG_CRASH=1 (tests only). */
export const DEBUG_CRASH_PURPOSES: Record<string, RiskInput['debugCrash']> = {
  __crash_worker__: 'exit',
  __crash_worker_throw__: 'throw',
};

/** KV key of a score: `<model version>.<sha256 of the inputs>`. `scoreCacheKey(input) // 'cashflow-mc-1_0.9f2c…'` */
export function scoreCacheKey(input: Pick<RiskInput, 'amount' | 'currency' | 'termMonths' | 'financials'>, modelVersion = MODEL_VERSION): string {
  const f = input.financials;
  const hash = createHash('sha256')
    .update(JSON.stringify([modelVersion, input.amount, input.currency, input.termMonths, f.annualRevenue, f.yearsTrading, f.existingDebt]))
    .digest('hex');
  // Dots separate KV key tokens; keep the version one token so `<version>.*` lists its scores.
  return `${modelVersion.replace(/[^A-Za-z0-9_-]/g, '_')}.${hash}`;
}

/**
 * Whether piscina can renice its threads: its `niceIncrement` loads the optional
 * `@napi-rs/nice` in each thread and silently does nothing without it.
 * `niceAvailable() // true when piscina's optional dependency loads`
 */
export function niceAvailable(): boolean {
  try {
    // Loaded the way piscina's threads load it: from piscina's place, native binding included.
    const fromPiscina = createRequire(createRequire(import.meta.url).resolve('piscina'));
    return typeof (fromPiscina('@napi-rs/nice') as { nice?: unknown }).nice === 'function';
  } catch {
    return false;
  }
}

/**
 * Linux schedules each session's processes as one group (its autogroup) against every
 * other session's whenever they share the root cgroup, as on a VM running Postgres,
 * NATS and the services side by side. There the scoring threads' nice only ranks them
 * against this process's own threads: as a group they still take an equal share with
 * Postgres and with NATS, which then wait for a core behind the model (on two cores,
 * POST p95 was 35-70 ms with nice scoring threads, 14 ms without autogroups). A process
 * that runs nothing but scoring and leads its own session (started with setsid, as a
 * container's first process is) lowers its group's priority by the same nice. In a
 * container with its own cgroup the autogroup is unused and this changes nothing;
 * a process sharing a shell's session leaves the session alone.
 * `lowerSessionPriority(10, deps.config.TARGET, log) // 'lowered' | reason it did not`
 */
export function lowerSessionPriority(nice: number, target: string, log: Deps['log']): string {
  const targets = target.split(',').map((t) => t.trim()).filter(Boolean);
  if (nice <= 0 || process.platform !== 'linux') return 'no nice';
  if (targets.length !== 1 || targets[0] !== 'funding-scoring') return 'shares the process with other services';
  try {
    // /proc/self/stat: "pid (comm) state ppid pgrp session ...": comm may hold spaces and ')', so split after the last ')'.
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const session = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
    if (session !== process.pid) return 'not a session leader';
    writeFileSync('/proc/self/autogroup', String(nice));
  } catch (err) {
    log.warn({ err: String(err) }, 'could not lower the scoring process group priority');
    return 'failed';
  }
  log.info({ nice }, 'scoring process leads its session: its scheduling group runs at a lower priority than Postgres and NATS');
  return 'lowered';
}

/** Why this application could not be scored, kept on the row (the reconciler then leaves it alone). */
export async function recordScoringError(orm: MikroORM, id: string, message: string): Promise<void> {
  await orm.em.fork().execute(`update funding.applications set scoring_error = ? where id = ? and status = 'risk_scoring'`, [message.slice(0, 2000), id]);
}
