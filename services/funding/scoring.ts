// Risk scoring: the `funding-scoring` consumer of `funding.risk.scoring.requested`.
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
import { Counter, Gauge } from 'prom-client';
import {
  FUNDING_WORK_STREAM, FundingBuckets, FundingConsumers, FundingSubjects, RiskScoringRequested, type RiskScoringCompleted,
} from '../../contracts/funding.ts';
import type { MikroORM } from '../kit/index.ts';
import { NonRetryableError, RetryLaterError } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { startWorker } from '../kit/index.ts';
import { disbursementRequest, loadWorkRow, transition } from './applications.ts';
import { loadFundingConfig, type FundingConfig } from './config.ts';
import { MODEL_VERSION, type RiskInput, type RiskResult } from './risk-model.ts';
import { createRiskPool, RiskPoolBusyError, RiskScoringError, RiskWorkerCrashedError } from './risk-pool.ts';

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

async function recordScoringError(orm: MikroORM, id: string, message: string): Promise<void> {
  await orm.em.fork().execute(`update funding.applications set scoring_error = ? where id = ? and status = 'risk_scoring'`, [message.slice(0, 2000), id]);
}

/** Start the pool and the scoring consumer. `const s = await startScoring(deps)` */
export async function startScoring(deps: Deps, config: FundingConfig = loadFundingConfig(deps.env, deps.endpoints.gateway)): Promise<Running> {
  const { orm, log, metrics } = deps;
  const scores = await deps.kvm.open(FundingBuckets.riskScores, { allow_direct: true });
  // The threads run below the event loop's priority, so the event loop, Postgres and
  // NATS get a core when they need one and scoring takes everything left over.
  const pool = createRiskPool({
    threads: config.FUNDING_RISK_THREADS,
    niceIncrement: config.FUNDING_RISK_NICE,
    onWorkerError: (err) => log.error({ err: String(err) }, 'risk pool thread failed outside a task'),
  });
  if (config.FUNDING_RISK_NICE > 0 && process.platform === 'linux' && !niceAvailable()) {
    log.warn('FUNDING_RISK_NICE is set but @napi-rs/nice (an optional dependency of piscina) is not installed: scoring threads keep the event loop priority');
  }
  lowerSessionPriority(config.FUNDING_RISK_NICE, deps.config.TARGET, log);
  const scored = new Counter({
    name: 'orderflow_funding_risk_scores_total', help: 'Risk scores by source (model run or KV cache) and decision',
    labelNames: ['source', 'decision'] as const, registers: [metrics.registry],
  });
  const scoringCpu = new Counter({
    name: 'orderflow_funding_risk_cpu_seconds_total', help: 'Thread CPU time spent in the risk model (pool threads)', registers: [metrics.registry],
  });
  new Gauge({
    name: 'orderflow_funding_risk_pool', help: 'Risk pool state: threads, live threads, queued tasks, crashed threads, utilization',
    labelNames: ['what'] as const, registers: [metrics.registry],
    collect() {
      const s = pool.stats();
      this.set({ what: 'threads' }, s.threads);
      this.set({ what: 'live_threads' }, s.liveThreads);
      this.set({ what: 'queued' }, s.queueSize);
      this.set({ what: 'crashed' }, s.crashed);
      this.set({ what: 'utilization' }, s.utilization);
    },
  });
  log.info({ threads: config.FUNDING_RISK_THREADS, nice: config.FUNDING_RISK_NICE, concurrency: config.FUNDING_RISK_CONCURRENCY, modelVersion: MODEL_VERSION, debugCrash: config.FUNDING_DEBUG_CRASH }, 'risk scoring pool started');
  if (config.FUNDING_DEBUG_CRASH) log.warn('FUNDING_DEBUG_CRASH=1: the purposes __crash_worker__ and __crash_worker_throw__ crash the scoring thread (test hook)');

  const worker = await startWorker({
    stream: FUNDING_WORK_STREAM,
    consumer: FundingConsumers.scoring,
    js: deps.nats.js, orm, errors: deps.errors, log, metrics,
    schema: RiskScoringRequested,
    key: (r) => r.applicationId,
    concurrency: config.FUNDING_RISK_CONCURRENCY,
    retry: { baseMs: 1000, factor: 2, maxMs: 30_000 },
    // Idempotent without the inbox: the decision is one statement guarded by status and
    // version, so a redelivered request finds the application decided (or loses the
    // compare-and-set, retries and then finds it decided) and writes nothing.
    inbox: false,
    handle: async (req, ctx) => {
      const app = await loadWorkRow(ctx.em, req.applicationId);
      if (!app) throw new NonRetryableError(`application ${req.applicationId} does not exist`);
      // Already decided (a duplicate request, or the reconciler asked again): nothing to do.
      if (app.status !== 'risk_scoring') return;

      const input: RiskInput = {
        applicationId: app.id, amount: app.amountMinor / 100, currency: app.currency, termMonths: app.termMonths, financials: app.financials,
      };
      const crash = config.FUNDING_DEBUG_CRASH ? DEBUG_CRASH_PURPOSES[app.purpose] : undefined;
      if (crash) input.debugCrash = crash;

      const key = scoreCacheKey(input);
      let result: Omit<RiskResult, 'cpuMs'> | undefined;
      let cached = false;
      if (!crash) {
        const hit = await scores.get(key).catch((err) => { ctx.log.warn({ err: String(err) }, 'score cache read failed; scoring'); return null; });
        if (hit?.operation === 'PUT' && hit.value.length) {
          try { result = hit.json<RiskResult>(); cached = true; } catch { result = undefined; }
        }
      }
      if (!result) {
        try {
          const scoredNow = await pool.score(input);
          scoringCpu.inc(scoredNow.cpuMs / 1000);
          result = scoredNow;
        } catch (err) {
          if (err instanceof RiskPoolBusyError) throw new RetryLaterError(500, err.message);
          if (err instanceof RiskWorkerCrashedError || err instanceof RiskScoringError) {
            await recordScoringError(orm, app.id, err.message);
            ctx.log.error({ applicationId: app.id, err: err.message }, 'risk scoring failed on this input; sending it to the DLQ');
            throw new NonRetryableError(err.message, { cause: err });
          }
          throw err;
        }
        await scores.put(key, JSON.stringify(result)).catch((err) => ctx.log.warn({ err: String(err) }, 'score cache write failed'));
      }

      const r = result;
      const completed: RiskScoringCompleted = {
        applicationId: app.id, riskScore: r.score, probabilityOfDefault: r.probabilityOfDefault, status: r.decision, reasons: r.reasons,
        modelVersion: r.modelVersion, cached, timestamp: new Date().toISOString(),
      };
      // One statement, atomic by itself: no transaction around it, so the relay is woken here.
      await transition(orm.em.fork(), {
        id: app.id, from: 'risk_scoring', to: r.decision, version: app.version, requestId: ctx.requestId,
        set: { riskScore: r.score, probabilityOfDefault: r.probabilityOfDefault, riskDecision: r.decision, riskReasons: r.reasons, modelVersion: r.modelVersion, scoringError: null },
        metadata: { riskScore: r.score, modelVersion: r.modelVersion },
        events: [
          { subject: FundingSubjects.riskScoringCompleted, data: completed },
          ...(r.decision === 'approved' ? [disbursementRequest(app, 'approved')] : []),
        ],
      });
      deps.wakeOutbox();
      scored.inc({ source: cached ? 'cache' : 'model', decision: r.decision });
      ctx.log.info({ applicationId: app.id, decision: r.decision, score: r.score, cached }, 'application scored');
    },
  });

  return {
    async stop() {
      await worker.stop();
      await pool.close();
    },
  };
}
