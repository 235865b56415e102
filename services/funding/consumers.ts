// The application router and the workers of funding.
//  - funding-router (FUNDING, `funding.applications.created`): the seed's "event
//    router": processing → risk_scoring, and the `risk.scoring.requested` command, in
//    one statement. Runs through the kit's delivery core in batch mode (DLQ, backoff,
//    no inbox: the status guards it): the applications of a burst move in one statement
//    per batch, not one transaction each.
//  - funding-scoring and funding-scoring-high (FUNDING_WORK, `funding.risk.scoring.requested`
//    and `.high`): the risk model in its piscina pool, one consumer per priority lane
//    (startScoringConsumer; scoring.ts), the `funding-scoring` target.
//  - funding-disbursement (FUNDING_WORK, `funding.disbursement.requested`): the payout
//    (startDisbursementConsumer; disbursement.ts for the three guards against paying twice).
import { setTimeout as sleep } from 'node:timers/promises';
import { Counter, Gauge } from 'prom-client';
import {
  ApplicationCreated, DisbursementRequested, FUNDING_EVENTS_STREAM, FUNDING_WORK_STREAM, FundingBuckets, FundingConsumers, FundingSubjects,
  isFinalStatus, RiskScoringRequested, type RiskScoringCompleted,
} from '../../contracts/funding.ts';
import { startConsumer, type RunningConsumer } from '../kit/index.ts';
import { startWorker, type HandlerContext, type Worker } from '../kit/index.ts';
import { NonRetryableError, RetryLaterError } from '../kit/index.ts';
import {
  GatewayAmbiguousError, GatewayError, GatewayRateLimitedError, GatewayRejectedError, GatewayTransientError, GatewayUnavailableError, type GatewayClient, type GatewayPayout,
} from '../kit/index.ts';
import type { Logger } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { disbursementRequest, inputsOf, loadWorkRow, scoringRequest, StaleApplicationError, transition, transitionMany, type WorkRow } from './applications.ts';
import { loadFundingConfig, type FundingConfig } from './config.ts';
import { beginDisbursing, findPayout, loadPayout, settleFailed, settlePaid } from './disbursement.ts';
import { MODEL_VERSION, MODEL_VERSIONS, type RiskInput, type RiskResult } from './risk-model.ts';
import { riskModelPicker } from './risk-flag.ts';
import { createRiskPool, type Lane, RiskPoolBusyError, RiskScoringError, RiskWorkerCrashedError } from './risk-pool.ts';
import { DEBUG_CRASH_PURPOSES, lowerSessionPriority, niceAvailable, recordScoringError, scoreCacheKey } from './scoring.ts';

/** What scoring needs of an application: the row (read) or the request's inputs (status and version then unknown). */
type ScoringApp = Pick<WorkRow, 'id' | 'businessId' | 'amountMinor' | 'currency' | 'termMonths' | 'financials' | 'purpose'> & Partial<Pick<WorkRow, 'status' | 'version'>>;

/** Start the router. `const ws = await startFundingConsumers(deps, { routerBatch: 64 })` */
export async function startFundingConsumers(deps: Deps, opts: { routerBatch: number }): Promise<RunningConsumer[]> {
  const router = await startConsumer<ApplicationCreated>({
    js: deps.nats.js, orm: deps.orm, errors: deps.errors, log: deps.log, metrics: deps.metrics, tracing: deps.tracing,
    stream: FUNDING_EVENTS_STREAM,
    consumer: FundingConsumers.router,
    schema: ApplicationCreated,
    key: (e) => e.applicationId,
    batch: { size: opts.routerBatch, lingerMs: 2 },
    retry: { baseMs: 500, factor: 2, maxMs: 10_000 },
    // Guarded by status alone (compare-and-set on `processing`, version bumped), so no
    // read first and no inbox (guard 'state'): a redelivery or a reconciler that got
    // there first finds it moved on, and that application gets no events. The batch's
    // one statement commits by itself, and its rows go to the relay as committed.
    guard: 'state',
    handle: async (items, em) => {
      const { outbox } = await transitionMany(em, {
        from: 'processing', to: 'risk_scoring',
        items: items.map((i) => ({
          id: i.data.applicationId, requestId: i.requestId, trace: i.trace,
          events: [scoringRequest(i.data.applicationId, 'new', i.data.priority, inputsOf(i.data))],
        })),
      });
      deps.wakeOutbox(outbox);
    },
  });
  return [router];
}

/**
 * Start the pool and the scoring consumer. The model runs in the pool, never on this
 * event loop; the worker keeps about two messages in hand per thread so a thread finishing
 * a task finds the next one already queued. `const s = await startScoringConsumer(deps)`
 */
export async function startScoringConsumer(deps: Deps, config: FundingConfig = loadFundingConfig(deps.env, deps.endpoints.gateway)): Promise<Running> {
  const { orm, log, metrics } = deps;
  const scores = await deps.kvm.open(FundingBuckets.riskScores, { allow_direct: true });
  // The threads run below the event loop's priority, so the event loop, Postgres and
  // NATS get a core when they need one and scoring takes everything left over.
  const pool = createRiskPool({
    threads: config.FUNDING_RISK_THREADS,
    niceIncrement: config.FUNDING_RISK_NICE,
    reservedForHigh: config.FUNDING_RISK_HIGH_RESERVED,
    onWorkerError: (err) => log.error({ err: String(err) }, 'risk pool thread failed outside a task'),
    tracing: deps.tracing,
  });
  if (config.FUNDING_RISK_NICE > 0 && process.platform === 'linux' && !niceAvailable()) {
    log.warn('FUNDING_RISK_NICE is set but @napi-rs/nice (an optional dependency of piscina) is not installed: scoring threads keep the event loop priority');
  }
  lowerSessionPriority(config.FUNDING_RISK_NICE, deps.config.TARGET, log);
  const scored = new Counter({
    name: 'orderflow_funding_risk_scores_total', help: 'Risk scores by source (model run or KV cache) and decision',
    labelNames: ['source', 'decision'] as const, registers: [metrics.registry],
  });
  const decisions = new Counter({
    name: 'orderflow_funding_decisions_total', help: 'Model decisions by the model version that made them (approval rate per version = approved ÷ all of that version)',
    labelNames: ['modelVersion', 'decision'] as const, registers: [metrics.registry],
  });
  const models = riskModelPicker(deps.flags.client);
  // Each unknown variant is logged once, not once per application.
  const unknownVariants = new Set<string>();
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
      this.set({ what: 'queued_high' }, s.queuedHigh);
      this.set({ what: 'reserved_for_high' }, s.reservedForHigh);
      this.set({ what: 'high_wait_p95_ms' }, s.highWaitTimeP95);
      this.set({ what: 'crashed' }, s.crashed);
      this.set({ what: 'utilization' }, s.utilization);
    },
  });
  log.info({
    threads: config.FUNDING_RISK_THREADS, nice: config.FUNDING_RISK_NICE, concurrency: config.FUNDING_RISK_CONCURRENCY,
    highConcurrency: config.FUNDING_RISK_HIGH_CONCURRENCY, reservedForHigh: config.FUNDING_RISK_HIGH_RESERVED, modelVersion: MODEL_VERSION, modelVersions: MODEL_VERSIONS, debugCrash: config.FUNDING_DEBUG_CRASH }, 'risk scoring pool started');
  if (config.FUNDING_DEBUG_CRASH) log.warn('FUNDING_DEBUG_CRASH=1: the purposes __crash_worker__ and __crash_worker_throw__ crash the scoring thread (test hook)');

  // One consumer per lane, so a high-priority request is pulled at once however deep the
  // normal backlog (its own durable, its own messages in hand), and the pool runs it first.
  const startLane = async (lane: Lane, consumer: string, concurrency: number) => await startWorker({
    stream: FUNDING_WORK_STREAM,
    consumer,
    js: deps.nats.js, orm, errors: deps.errors, log, metrics, tracing: deps.tracing,
    schema: RiskScoringRequested,
    key: (r) => r.applicationId,
    concurrency,
    retry: { baseMs: 1000, factor: 2, maxMs: 30_000 },
    // Idempotent without the inbox: the decision is one statement guarded by the status, so
    // a redelivered request finds the application decided (or loses the compare-and-set)
    // and writes nothing.
    inbox: false,
    handle: async (req, ctx) => {
      // The router's requests carry the inputs: nothing is read first, and the decision's
      // compare-and-set on the status (below) finds out whether it was decided already. A
      // request without them (the reconciler's, older ones), or the crash test hook (which
      // reads the purpose), reads the row.
      const app: ScoringApp | null = req.inputs && !config.FUNDING_DEBUG_CRASH
        ? { id: req.applicationId, ...req.inputs, purpose: '' }
        : await loadWorkRow(ctx.em, req.applicationId);
      if (!app) throw new NonRetryableError(`application ${req.applicationId} does not exist`);
      // Already decided (a duplicate request, or the reconciler asked again): nothing to do.
      if (app.status !== undefined && app.status !== 'risk_scoring') return;

      // The version is picked when the application is scored (not when it was posted), so a
      // rollback applies at once to every application still waiting in the queue.
      const model = await models.pick(app.businessId);
      if (model.unknown !== undefined && !unknownVariants.has(model.unknown)) {
        unknownVariants.add(model.unknown);
        ctx.log.warn({ variant: model.unknown, known: MODEL_VERSIONS, using: model.version }, 'funding.riskModel names a model version this build does not have; scoring with the default model');
      }
      const input: RiskInput = {
        applicationId: app.id, amount: app.amountMinor / 100, currency: app.currency, termMonths: app.termMonths, financials: app.financials,
        modelVersion: model.version,
      };
      const crash = config.FUNDING_DEBUG_CRASH ? DEBUG_CRASH_PURPOSES[app.purpose] : undefined;
      if (crash) input.debugCrash = crash;

      const key = scoreCacheKey(input, model.version);
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
          const scoredNow = await pool.score(input, { lane });
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
      }

      const r = result;
      const completed: RiskScoringCompleted = {
        applicationId: app.id, riskScore: r.score, probabilityOfDefault: r.probabilityOfDefault, status: r.decision, reasons: r.reasons,
        modelVersion: r.modelVersion, cached, timestamp: new Date().toISOString(),
      };
      // One statement, atomic by itself: no transaction around it, so the relay is woken here.
      // Guarded by the status (and the version, when the row was read): a request whose
      // application was decided meanwhile (a redelivery racing the first delivery) writes nothing.
      let moved;
      try {
        moved = await transition(orm.em.fork(), {
          id: app.id, from: 'risk_scoring', to: r.decision, version: app.version, requestId: ctx.requestId,
          set: { riskScore: r.score, probabilityOfDefault: r.probabilityOfDefault, riskDecision: r.decision, riskReasons: r.reasons, modelVersion: r.modelVersion, scoringError: null },
          metadata: { riskScore: r.score, modelVersion: r.modelVersion },
          events: [
            { subject: FundingSubjects.riskScoringCompleted, data: completed },
            ...(r.decision === 'approved' ? [disbursementRequest(app, 'approved')] : []),
          ],
        });
      } catch (err) {
        if (err instanceof StaleApplicationError && app.version === undefined) {
          ctx.log.info({ applicationId: app.id }, 'application was decided already; this request changes nothing');
          return;
        }
        throw err;
      }
      deps.wakeOutbox(moved.outbox);
      // Cached after the decision, so its request goes out with the relay's publishes just
      // started (one socket write, one wake-up of nats-server) rather than on its own before.
      if (!cached) await scores.put(key, JSON.stringify(r)).catch((err) => ctx.log.warn({ err: String(err) }, 'score cache write failed'));
      scored.inc({ source: cached ? 'cache' : 'model', decision: r.decision });
      decisions.inc({ modelVersion: r.modelVersion, decision: r.decision });
      ctx.log.info({ applicationId: app.id, decision: r.decision, score: r.score, modelVersion: r.modelVersion, lane, cached }, 'application scored');
    },
  });
  const workers = [
    await startLane('high', FundingConsumers.scoringHigh, config.FUNDING_RISK_HIGH_CONCURRENCY),
    await startLane('normal', FundingConsumers.scoring, config.FUNDING_RISK_CONCURRENCY),
  ];

  return {
    async stop() {
      await Promise.all(workers.map((w) => w.stop()));
      await pool.close();
    },
  };
}

/**
 * Start the disbursement consumer. While the breaker is open the worker pulls nothing,
 * and a message in hand waits for it (heartbeating) instead of burning deliveries: an
 * open breaker never sends a payout to the DLQ.
 * `const w = await startDisbursementConsumer(deps, gateway, { concurrency: 16 })`
 */
export async function startDisbursementConsumer(deps: Deps, gateway: GatewayClient, opts: { concurrency: number; resendAfterMs?: number }): Promise<Worker> {
  // A gateway's look-up may lag its POST: after an attempt whose fate is unknown, only
  // send again once a look-up this long after it still finds nothing.
  const resendAfterMs = opts.resendAfterMs ?? 5000;
  const { orm, log, metrics } = deps;
  let running = true;
  const outcomes = new Counter({
    name: 'orderflow_funding_disbursements_total', help: 'Disbursements by outcome (paid, paid_found_by_reference, invalid_destination)',
    labelNames: ['outcome'] as const, registers: [metrics.registry],
  });

  // A message in hand while the breaker is open waits here rather than failing a delivery.
  const waitForBreaker = async (ctx: HandlerContext) => {
    let beat = Date.now();
    do {
      if (!running) throw new RetryLaterError(1000, 'stopping while the payment gateway breaker is open');
      if (Date.now() - beat > 5000) { ctx.msg.working(); beat = Date.now(); }
      await sleep(200);
    } while (gateway.isOpen());
  };

  const onDisbursementRequested = async (req: DisbursementRequested, ctx: HandlerContext, plog: Logger) => {
    // The common case moves first (approved → disbursing, returning the row) and reads
    // nothing before; anything else (a redelivery, a resumed payout) is read and decided.
    const begun = await beginDisbursing(orm.em.fork(), req.applicationId, deps.wakeOutbox, ctx.requestId);
    const app = begun ?? await loadWorkRow(ctx.em, req.applicationId);
    if (!app) throw new NonRetryableError(`application ${req.applicationId} does not exist`);
    if (isFinalStatus(app.status)) return;
    // Approved when the move above found it otherwise: it changed in between; decide again.
    if (app.status === 'approved' && !begun) throw new RetryLaterError(100, `application ${app.id} changed while starting its disbursement`);
    if (app.status !== 'disbursing') {
      plog.warn({ status: app.status }, 'disbursement requested for an application that is not approved; ignored');
      return;
    }
    const current = { id: app.id, version: app.version };
    // Each settle is one statement, atomic by itself: no transaction around it, so the relay is woken here.
    const paid = async (p: GatewayPayout, how: string, outcome: string) => {
      deps.wakeOutbox(await settlePaid(orm.em.fork(), current, p, how, ctx.requestId));
      outcomes.inc({ outcome });
      plog.info({ payoutId: p.id, how }, 'application disbursed');
    };
    // Any earlier attempt may have reached the gateway: ask before sending.
    let mustLookUp: boolean;
    let counted = false;
    let lastAttemptAt = 0;
    if (begun) {
      mustLookUp = false;
      counted = true;
    } else {
      const record = await loadPayout(ctx.em, app.id);
      if (!record) throw new Error(`payout record of ${app.id} missing while disbursing`);
      if (record.state === 'paid' && record.gatewayPayoutId) {
        return await paid({ id: record.gatewayPayoutId, status: 'paid', amount: app.amountMinor, currency: app.currency, reference: app.id }, 'payout already recorded', 'paid');
      }
      mustLookUp = record.attempts > 0;
      lastAttemptAt = record.lastAttemptAt;
    }
    for (;;) {
      try {
        if (mustLookUp) {
          const found = await findPayout(gateway, app.id);
          if (found) return await paid(found, 'found by reference after an earlier attempt', 'paid_found_by_reference');
          const wait = lastAttemptAt + resendAfterMs - Date.now();
          if (wait > 0) throw new RetryLaterError(wait, `no payout found by reference yet; looking again before sending (last attempt ${Math.round(resendAfterMs - wait)} ms ago)`);
        }
        mustLookUp = true;
        if (!counted) await orm.em.fork().execute('update funding.payouts set attempts = attempts + 1, updated_at = now() where application_id = ?', [app.id]);
        counted = false;
        lastAttemptAt = Date.now();
        const res = await gateway.payout({
          amount: app.amountMinor, currency: app.currency, reference: app.id,
          destination: { iban: app.bankAccount.iban, holderName: app.bankAccount.holderName },
        }, app.id);
        if (res.outcome === 'ok') return await paid(res.payout, res.replayed ? 'gateway replayed the first answer' : 'paid', 'paid');
        deps.wakeOutbox(await settleFailed(orm.em.fork(), current, `invalid_destination: ${res.message}`, ctx.requestId));
        outcomes.inc({ outcome: 'invalid_destination' });
        plog.warn({ reason: res.message }, 'payout refused: invalid destination');
        return;
      } catch (err) {
        if (!(err instanceof GatewayError)) throw err;
        if (err instanceof GatewayUnavailableError) { await waitForBreaker(ctx); continue; }
        if (err instanceof GatewayRateLimitedError) throw new RetryLaterError(err.retryAfterMs, err.message);
        if (err instanceof GatewayRejectedError) throw new NonRetryableError(err.message, { cause: err });
        // Transient: an ambiguous POST, or a look-up that failed.
        let failure: Error = err;
        if (err instanceof GatewayAmbiguousError) {
          plog.warn({ err: err.message }, 'payout outcome unknown; looking it up by reference');
          const found = await findPayout(gateway, app.id).catch((lookupErr) => {
            if (lookupErr instanceof GatewayTransientError) return null;
            throw lookupErr;
          });
          if (found) return await paid(found, `found by reference after: ${err.message}`, 'paid_found_by_reference');
          failure = new Error(`${err.message}; no payout found by reference yet`, { cause: err });
        }
        // This failure tripped the breaker (or a half-open trial failed): the gateway is
        // down, not this payout. Hold the message rather than spend a delivery on it.
        if (gateway.isOpen()) { await waitForBreaker(ctx); continue; }
        // Back off; the next attempt looks up again before any POST.
        throw failure;
      }
    }
  };

  const worker = await startWorker({
    stream: FUNDING_WORK_STREAM,
    consumer: FundingConsumers.disbursement,
    js: deps.nats.js, orm, errors: deps.errors, log, metrics, tracing: deps.tracing,
    schema: DisbursementRequested,
    key: (r) => r.applicationId,
    concurrency: opts.concurrency,
    retry: { baseMs: 1000, factor: 2, maxMs: 30_000 },
    paused: () => gateway.isOpen(),
    // Idempotent without the inbox: every write is a compare-and-set on the status (and
    // version) it read, and the three guards of disbursement.ts keep a redelivery from
    // paying twice; the inbox's BEGIN, insert and COMMIT per payout bought nothing more.
    inbox: false,
    handle: (req, ctx) => onDisbursementRequested(req, ctx, ctx.log.child({ applicationId: req.applicationId })),
  });
  return {
    inflight: () => worker.inflight(),
    async stop(timeoutMs?: number) {
      running = false;
      await worker.stop(timeoutMs);
    },
  };
}
