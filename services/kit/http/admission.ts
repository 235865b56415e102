// Admission control: a process takes on no more requests than it can finish while their
// clients still wait. Without it an overloaded process accepts everything, its queues (the
// database pool's, the event loop's) fill with work whose clients have given up, and it
// keeps working for nobody after the load is gone: the load report's quick runs saw no
// recovery after the 10x spike. With it, excess requests get a fast 503 UNAVAILABLE with
// Retry-After (the contract's transient answer) and the process serves what it admitted.
//
// Three limits, each an argument (config: HTTP_MAX_INFLIGHT, HTTP_QUEUE_MAX,
// HTTP_QUEUE_TIMEOUT_MS, HTTP_SHED_LOOP_LAG_MS):
//  - at most `maxInflight` requests in handlers at once; the next ones wait in a FIFO queue;
//  - at most `queueMax` waiting, each at most `queueTimeoutMs`; beyond either, 503;
//  - while the event loop runs more than `shedLoopLagMs` late, new requests are refused at
//    once: that lag is the queue in front of this middleware (sockets read, requests not
//    yet parsed), which no in-flight count can see, and the one that grows when the
//    process is short of CPU rather than of a pool.
// A waiting request whose client goes away leaves the queue without running. The probes
// are never refused: an overloaded replica is still alive and, for its load balancer, ready.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { MiddlewareHandler } from 'hono';
import type { Metrics } from '../metrics.ts';
import { errorBody } from './errors.ts';
import { PROBE_PATHS } from './request-id.ts';

export type AdmissionOptions = {
  maxInflight: number;
  queueMax: number;
  queueTimeoutMs: number;
  /** 0: off. */
  shedLoopLagMs: number;
  metrics: Pick<Metrics, 'httpShed' | 'watchAdmission'>;
  /** The event loop's recent lag in ms; by default measured here (perf_hooks). Tests pass their own. */
  loopLagMs?: () => number;
};

export type ShedReason = 'queue_full' | 'queue_timeout' | 'loop_lag';

/** nginx's status for a request whose client left first; nobody receives it, the access log shows it. */
const CLIENT_CLOSED_REQUEST = 499;

type Waiter = { admit: () => void };

/**
 * The event loop's lag: the largest delay of the last full half-second window and of the
 * current one, from Node's own histogram (a libuv timer, no JavaScript per tick).
 */
export function loopLagMeter(windowMs = 500): () => number {
  // 100 ms samples (not 20): each wakes the process, and the lag this acts on is a second.
  const h = monitorEventLoopDelay({ resolution: 100 });
  h.enable();
  let windowStart = performance.now();
  let previousMax = 0;
  return () => {
    const now = performance.now();
    if (now - windowStart >= windowMs) {
      previousMax = h.max / 1e6;
      h.reset();
      windowStart = now;
    }
    // Before the histogram's first sample its max is a huge sentinel; count no lag until then.
    const current = h.count > 0 ? h.max / 1e6 : 0;
    return Math.max(previousMax, current);
  };
}

/** `app.use('*', admission({ maxInflight: 256, queueMax: 1024, queueTimeoutMs: 2000, shedLoopLagMs: 1000, metrics }))` */
export function admission(o: AdmissionOptions): MiddlewareHandler {
  let inflight = 0;
  const queue: Waiter[] = [];
  const lag = o.shedLoopLagMs > 0 ? (o.loopLagMs ?? loopLagMeter()) : () => 0;
  o.metrics.watchAdmission(() => ({ inflight, queued: queue.length }));
  const shed = (reason: ShedReason, retryAfterS: number) => {
    o.metrics.httpShed.inc({ reason });
    return Response.json(errorBody('UNAVAILABLE', 'the service is overloaded; retry shortly'), { status: 503, headers: { 'Retry-After': String(retryAfterS) } });
  };
  // A finished request hands its slot to the oldest waiter (one that left is already out of
  // the queue), or gives it back.
  const release = () => {
    const next = queue.shift();
    if (next) next.admit();
    else inflight--;
  };

  return async (c, next) => {
    if (PROBE_PATHS.has(c.req.path)) return await next();
    if (o.shedLoopLagMs > 0 && lag() > o.shedLoopLagMs) return shed('loop_lag', 1);
    if (inflight >= o.maxInflight) {
      if (queue.length >= o.queueMax) return shed('queue_full', 1);
      // Only a waiting request reads its signal: building it makes @hono/node-server create a full Request.
      const signal = c.req.raw.signal;
      const outcome = await new Promise<'admitted' | 'timeout' | 'gone'>((resolve) => {
        const w: Waiter = { admit: () => { cleanup(); resolve('admitted'); } };
        const leave = (why: 'timeout' | 'gone') => {
          const i = queue.indexOf(w);
          if (i >= 0) queue.splice(i, 1);
          cleanup();
          resolve(why);
        };
        const timer = setTimeout(() => leave('timeout'), o.queueTimeoutMs);
        const onAbort = () => leave('gone');
        const cleanup = () => { clearTimeout(timer); signal.removeEventListener('abort', onAbort); };
        if (signal.aborted) { cleanup(); resolve('gone'); return; }
        signal.addEventListener('abort', onAbort, { once: true });
        queue.push(w);
      });
      if (outcome === 'timeout') return shed('queue_timeout', Math.max(1, Math.ceil(o.queueTimeoutMs / 1000)));
      if (outcome === 'gone') { o.metrics.httpShed.inc({ reason: 'client_gone' }); return c.body(null, CLIENT_CLOSED_REQUEST as never); }
      // Admitted: the slot was handed over by release(), inflight already counts it.
    } else {
      inflight++;
    }
    try {
      await next();
    } finally {
      release();
    }
  };
}
