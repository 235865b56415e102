// Prometheus metrics, one registry per process (passed around, never global).
// Every name here is stable: dashboards and alert rules in ops/ query them, and
// ops/ops.test.ts fails when one of those queries names a metric the cluster does
// not export. The scrape-time collectors (NATS and Postgres) are in collectors.ts.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Metrics = ReturnType<typeof createMetrics>;

/** nodejs_eventloop_lag_*: the sampling interval, included in every value (ops/dashboards/orderflow-node.json subtracts it). */
export const EVENT_LOOP_SAMPLE_MS = 100;

/** What a circuit breaker reports; gateway-client and t24-client use these names. */
export type BreakerStateName = 'open' | 'halfOpen' | 'closed';
const BREAKER_STATES: readonly BreakerStateName[] = ['closed', 'halfOpen', 'open'];

/** `const metrics = createMetrics()`; `metrics.registry.metrics()` renders the text format. */
export function createMetrics() {
  const registry = new Registry();
  // The event loop lag histogram is a libuv timer: at prom-client's default 10 ms it woke an
  // idle process 100 times a second, 7.9 ms of CPU per second on this VM (a woken vCPU is
  // dear here); at 100 ms, 0.8. A sample every 100 ms still shows any stall a scrape
  // interval would care about. Its values include the interval (an idle loop reads 100 ms):
  // the Node runtime dashboard subtracts it.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  // Breakers are read at scrape time from the clients that own them (their state follows opossum's events).
  const breakers = new Map<string, { system: string; client: string; read: () => BreakerStateName }>();
  const breakerState = new Gauge({
    name: 'orderflow_breaker_state', help: '1 for the state each circuit breaker is in (closed, halfOpen, open), 0 for the others',
    labelNames: ['system', 'client', 'state'] as const, registers: [registry],
    collect() {
      this.reset();
      for (const { system, client, read } of breakers.values()) {
        let now: BreakerStateName;
        try { now = read(); } catch { continue; }
        for (const state of BREAKER_STATES) this.set({ system, client, state }, state === now ? 1 : 0);
      }
    },
  });
  const httpShed = new Counter({
    name: 'orderflow_http_shed_total', help: 'HTTP requests refused by admission control (503) or dropped while queued because the client left',
    labelNames: ['reason'] as const, registers: [registry],
  });
  // Every reason at 0 from the start, so rate() sees the first refusal.
  for (const reason of ['queue_full', 'queue_timeout', 'loop_lag', 'client_gone', 'upstream_full']) httpShed.inc({ reason }, 0);
  // Admission control's state is read at scrape time, as the breakers' is: nothing per request.
  let admissionState: (() => { inflight: number; queued: number }) | undefined;
  return {
    registry,
    httpSeconds: new Histogram({
      name: 'orderflow_http_request_duration_seconds', help: 'HTTP request latency',
      labelNames: ['method', 'route', 'status'] as const, registers: [registry],
      // 0.1, 0.2 and 0.3 are the seeds' p95 bounds (status, funding API, commerce): alerts compare at a bucket edge.
      buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.3, 0.5, 1, 2.5],
    }),
    // kit/http/admission.ts: requests refused so the admitted ones finish (reason: queue_full,
    // queue_timeout, loop_lag, and the gateway's upstream_full; client_gone for a waiter whose
    // client left), and the queue's state.
    httpShed,
    httpAdmission: new Gauge({
      name: 'orderflow_http_admission', help: 'Admission control: requests in handlers (inflight) and waiting for a slot (queued)',
      labelNames: ['what'] as const, registers: [registry],
      collect() {
        const s = admissionState?.();
        if (!s) return;
        this.set({ what: 'inflight' }, s.inflight);
        this.set({ what: 'queued' }, s.queued);
      },
    }),
    /** Report admission control's state at every scrape (kit/http/admission.ts; one app per process). */
    watchAdmission(read: () => { inflight: number; queued: number }) { admissionState = read; },
    handlerOutcomes: new Counter({
      name: 'orderflow_handler_outcomes_total', help: 'JetStream handler outcomes (ok, retry, deferred, dlq, duplicate)',
      labelNames: ['consumer', 'outcome'] as const, registers: [registry],
    }),
    handlerSeconds: new Histogram({
      name: 'orderflow_handler_duration_seconds', help: 'JetStream handler duration',
      labelNames: ['consumer', 'outcome'] as const, registers: [registry],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    }),
    dlqDepth: new Gauge({ name: 'orderflow_dlq_depth', help: 'Messages in the DLQ stream', registers: [registry] }),
    outboxLagSeconds: new Gauge({ name: 'orderflow_outbox_lag_seconds', help: 'Age of the oldest unpublished outbox row', registers: [registry] }),
    outboxPending: new Gauge({ name: 'orderflow_outbox_pending', help: 'Unpublished outbox rows', registers: [registry] }),
    outboxPublished: new Counter({ name: 'orderflow_outbox_published_total', help: 'Outbox rows published', registers: [registry] }),
    /** Rows the retention pruner deleted (kit/retention.ts), per table: inbox, idempotency_keys. */
    retentionPruned: new Counter({
      name: 'orderflow_retention_pruned_total', help: 'Expired rows deleted by the retention pruner, per kit table (inbox, idempotency_keys)',
      labelNames: ['table'] as const, registers: [registry],
    }),
    /** Requests refused by a rate limiter, per scope (e.g. `client`, `ip`, `route`). The edge's limiter increments it. */
    rateLimitRejections: new Counter({
      name: 'orderflow_rate_limit_rejections_total', help: 'Requests refused by a rate limit (429), per scope',
      labelNames: ['scope'] as const, registers: [registry],
    }),
    /** One SMTP hand-over each, from the start of the send to the server's answer; result ok or failed. */
    mailSeconds: new Histogram({
      name: 'orderflow_mail_delivery_seconds', help: 'Time to hand one mail to the SMTP server, by result (ok, failed)',
      labelNames: ['result'] as const, registers: [registry],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    }),
    /** Time a saga spent in `step` before it moved to `next` (compensation time counts from the failed step's start). */
    sagaStepSeconds: new Histogram({
      name: 'orderflow_saga_step_duration_seconds', help: 'Time an order saga spent in a step before moving on, by step and next step',
      labelNames: ['step', 'next'] as const, registers: [registry],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    }),
    statusCacheReads: new Counter({
      name: 'orderflow_status_cache_reads_total', help: 'Status cache reads by result (hit, miss, unavailable)',
      labelNames: ['result'] as const, registers: [registry],
    }),
    breakerState,
    /**
     * Report a breaker's state at every scrape. `metrics.watchBreaker('payment-gateway', 'payments', () => client.state())`
     * `system` is the external system, `client` the service that holds the breaker.
     */
    watchBreaker(system: string, client: string, read: () => BreakerStateName) {
      breakers.set(`${system}/${client}`, { system, client, read });
    },
  };
}

/** Count a handler outcome and its duration for one consumer. `const outcome = outcomeRecorder(metrics, 'notifications'); outcome('ok', started)` */
export function outcomeRecorder(metrics: Metrics | undefined, consumer: string) {
  return (result: string, started: number) => {
    metrics?.handlerOutcomes.inc({ consumer, outcome: result });
    metrics?.handlerSeconds.observe({ consumer, outcome: result }, (performance.now() - started) / 1000);
  };
}

/**
 * The same object with its `send` timed into `histogram` by result (ok, failed).
 * `const mailer = timedSend(createMailer(opts), metrics.mailSeconds)`
 */
export function timedSend<T extends { send(...args: never[]): Promise<unknown> }>(target: T, histogram: Histogram<'result'>): T {
  const send = target.send.bind(target) as (...args: unknown[]) => Promise<unknown>;
  return {
    ...target,
    send: async (...args: unknown[]) => {
      const end = histogram.startTimer();
      try {
        const r = await send(...args);
        end({ result: 'ok' });
        return r;
      } catch (err) {
        end({ result: 'failed' });
        throw err;
      }
    },
  };
}

/**
 * The same cache with its `get` counted: a value is a hit, null a miss, a throw unavailable.
 * `const cache = countedReads(createStatusCache(kv), metrics.statusCacheReads)`
 */
export function countedReads<T extends { get(...args: never[]): Promise<unknown> }>(cache: T, counter: Counter<'result'>): T {
  const get = cache.get.bind(cache) as (...args: unknown[]) => Promise<unknown>;
  return {
    ...cache,
    get: async (...args: unknown[]) => {
      try {
        const v = await get(...args);
        counter.inc({ result: v == null ? 'miss' : 'hit' });
        return v;
      } catch (err) {
        counter.inc({ result: 'unavailable' });
        throw err;
      }
    },
  };
}
