// A piscina pool of worker threads for the CPU-heavy risk model, so scoring
// never blocks a service's event loop. A thread runs one task at a time (the model is
// pure CPU) and holds at most one more, queued in its port: finishing a task it finds
// the next one there instead of going to sleep and being woken for it. The thread's CPU
// per task outside the model (that wake-up and the result's) was ~1.9 ms on this VM, and
// ~1.1 ms holding the next task (a pool alone, 400 tasks; docs/benchmarks.md). A
// thread that dies fails the task it was running alone: each task carries a word of
// shared memory the thread sets as the model starts and ends (risk-worker.ts), and a task
// the dying thread held but had not started, or had finished (its answer can lose the
// race with the thread's exit), is run again. piscina starts a replacement thread.
//
// Two lanes (CONTRACTS.md: `priority: "high"` is scored ahead of any backlog of normal
// ones). The pool hands piscina at most two tasks per thread and keeps the waiting ones
// itself, high first: a high task waits at most for the task ahead of it on a thread,
// never behind the queued normal ones; `reservedForHigh` threads are never given to a
// normal task (and then no thread holds a second task: piscina picks the thread, and a
// reserved one would take it), so with one reserved a high task starts at once however
// long the normal backlog.
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Piscina } from 'piscina';
import { tracingOff, type Tracing } from '../kit/index.ts';
import { scoreApplication, type RiskInput, type RiskResult } from './risk-model.ts';
import { STARTED, type WorkerTask } from './risk-worker.ts';

export type RiskPoolOptions = {
  /** Worker threads, started eagerly so they are warm. Default: os.availableParallelism(). */
  threads?: number;
  /** Tasks allowed to wait for a thread; beyond it score() rejects with RiskPoolBusyError. Default: unbounded. */
  maxQueue?: number;
  /**
   * Linux: nice added to each thread's OS priority as it starts (crash replacements
   * too), so the event loop wins a contended core. piscina's `niceIncrement`, through
   * its optional `@napi-rs/nice`; elsewhere ignored, since nice(2) on other Unixes
   * lowers the whole process, event loop included. Default 0.
   */
  niceIncrement?: number;
  /** Called for worker errors that belong to no task (e.g. an idle thread dying). */
  onWorkerError?: (err: Error) => void;
  /** Threads a normal task never takes (kept free for high ones); at most threads - 1. Default 0. */
  reservedForHigh?: number;
  /** A span per task (queue wait and run), in the caller's trace. */
  tracing?: Tracing;
};

export type Lane = 'normal' | 'high';

export type RiskPoolStats = {
  /** Configured thread count. */
  threads: number;
  /** Threads alive right now (briefly lower while a crashed one is replaced). */
  liveThreads: number;
  /** Tasks waiting for a thread, both lanes. */
  queueSize: number;
  queuedHigh: number;
  /** Threads a normal task never takes. */
  reservedForHigh: number;
  completed: number;
  failed: number;
  crashed: number;
  /** Share of the pool's thread time spent running tasks since it started, 0..1. */
  utilization: number;
  /** Task run and queue-wait times in ms (0 before the first task); wait is from score() to a thread, per lane for high. */
  runTimeP50: number;
  runTimeP95: number;
  runTimeP99: number;
  waitTimeP50: number;
  waitTimeP95: number;
  highWaitTimeP95: number;
};

export type RiskPool = {
  score(input: RiskInput, options?: { signal?: AbortSignal; lane?: Lane }): Promise<RiskResult>;
  stats(): RiskPoolStats;
  close(): Promise<void>;
};

/** The worker thread died while running the task; the input is fine, so retrying later is safe. */
export class RiskWorkerCrashedError extends Error {
  exitCode: number | undefined;
  constructor(message: string, exitCode: number | undefined, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RiskWorkerCrashedError';
    this.exitCode = exitCode;
  }
}

/** The model threw; `invalidInput` marks input the model rejects (retrying cannot help). */
export class RiskScoringError extends Error {
  invalidInput: boolean;
  constructor(message: string, invalidInput: boolean, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RiskScoringError';
    this.invalidInput = invalidInput;
  }
}

/** The queue is at maxQueue: back off and try again. */
export class RiskPoolBusyError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RiskPoolBusyError';
  }
}

const WORKER_FILENAME = new URL('./risk-worker.ts', import.meta.url).href;

/** Start a pool of risk-model threads. `const pool = createRiskPool({ threads: 2 }); const r = await pool.score(input); await pool.close()` */
export function createRiskPool(options: RiskPoolOptions = {}): RiskPool {
  const threads = Math.max(1, Math.floor(options.threads ?? availableParallelism()));
  const reservedForHigh = Math.min(threads - 1, Math.max(0, Math.floor(options.reservedForHigh ?? 0)));
  const tracing = options.tracing ?? tracingOff;
  const perThread = reservedForHigh > 0 ? 1 : 2;
  const piscina = new Piscina<RiskInput, RiskResult>({
    filename: WORKER_FILENAME,
    minThreads: threads,
    maxThreads: threads,
    concurrentTasksPerWorker: perThread,
    niceIncrement: process.platform === 'linux' ? Math.max(0, Math.floor(options.niceIncrement ?? 0)) : 0,
  });
  // Without a listener an 'error' event (a worker failing with no task in
  // hand) would throw and take the whole process down.
  piscina.on('error', (err: Error) => options.onWorkerError?.(err));

  type Waiting = { input: RiskInput; signal: AbortSignal | undefined; at: number; lane: Lane; resolve(r: RiskResult): void; reject(e: unknown): void; onAbort?: () => void; rerun?: boolean };
  const queues: Record<Lane, Waiting[]> = { high: [], normal: [] };
  // Heads of the queues advance by index (shift() on a 10,000-long array copies it).
  const heads: Record<Lane, number> = { high: 0, normal: 0 };
  const waiting = (lane: Lane) => queues[lane].length - heads[lane];
  const waits: Record<Lane, number[]> = { high: [], normal: [] };
  let running = 0;
  let failed = 0;
  let crashed = 0;
  let closing: Promise<void> | undefined;

  const take = (lane: Lane): Waiting | undefined => {
    const q = queues[lane];
    while (heads[lane] < q.length) {
      const w = q[heads[lane]]!;
      q[heads[lane]++] = undefined as never;
      if (heads[lane] > 1024 && heads[lane] * 2 > q.length) { q.splice(0, heads[lane]); heads[lane] = 0; }
      if (w.signal?.aborted) continue; // rejected by its abort listener already
      return w;
    }
    return undefined;
  };
  const record = (lane: Lane, ms: number) => {
    const w = waits[lane];
    w.push(ms);
    if (w.length > 2000) w.splice(0, 1000);
  };
  const start = (w: Waiting) => {
    running++;
    if (w.onAbort) w.signal!.removeEventListener('abort', w.onAbort);
    if (!w.rerun) record(w.lane, performance.now() - w.at);
    const progress = new Int32Array(new SharedArrayBuffer(4));
    const task: WorkerTask = { ...w.input, progress };
    piscina.run(task, { signal: w.signal ?? null }).then(w.resolve, (err) => {
      const mapped = mapError(err, w.input);
      if (mapped instanceof RiskWorkerCrashedError && Atomics.load(progress, 0) !== STARTED && !closing) {
        // The thread died under another task (this one waited in its hand, or had answered
        // and the answer lost the race with the exit): run it again, first in its lane.
        w.rerun = true;
        queues[w.lane].splice(heads[w.lane], 0, w);
        return;
      }
      failed++;
      if (mapped instanceof RiskWorkerCrashedError) crashed++;
      w.reject(mapped);
    }).finally(() => {
      running--;
      dispatch();
    });
  };
  // High first, into any thread with room; normal only into the threads beyond the reserved ones.
  const dispatch = () => {
    while (running < threads * perThread && !closing) {
      const w = take('high') ?? (running < (threads - reservedForHigh) * perThread ? take('normal') : undefined);
      if (!w) return;
      start(w);
    }
  };

  /** Queue a task on its lane; it runs when dispatch gives it a thread. */
  const enqueue = (input: RiskInput, runOptions: { lane?: Lane; signal?: AbortSignal } = {}): Promise<RiskResult> => {
    const lane = runOptions.lane ?? 'normal';
    const signal = runOptions.signal;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (options.maxQueue !== undefined && waiting('high') + waiting('normal') >= options.maxQueue && running >= threads - (lane === 'high' ? 0 : reservedForHigh)) {
      failed++;
      return Promise.reject(new RiskPoolBusyError('risk pool queue is full'));
    }
    return new Promise<RiskResult>((resolve, reject) => {
      const w: Waiting = { input, signal, at: performance.now(), lane, resolve, reject };
      if (signal) {
        // Aborted while waiting: it leaves the queue (take() skips it); once running, piscina aborts it.
        w.onAbort = () => reject(abortError(signal));
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      queues[lane].push(w);
      dispatch();
    });
  };

  return {
    score: (input, runOptions = {}) => tracing.span('risk score', { attributes: { 'orderflow.risk.threads': threads, 'orderflow.risk.lane': runOptions.lane ?? 'normal' } }, () => enqueue(input, runOptions)),

    stats() {
      const runTime = piscina.histogram.runTime;
      const hasRuns = piscina.completed > 0;
      const wait = (lane: Lane | 'both', p: number) => {
        const xs = (lane === 'both' ? [...waits.high, ...waits.normal] : waits[lane]).toSorted((a, b) => a - b);
        return xs.length ? xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]! : 0;
      };
      return {
        threads,
        liveThreads: piscina.threads.length,
        queueSize: waiting('high') + waiting('normal'),
        queuedHigh: waiting('high'),
        reservedForHigh,
        completed: piscina.completed,
        failed,
        crashed,
        // piscina 5.3's own `utilization` divides a ms mean by 1000 once too
        // often (always ~0), so compute it from the same inputs here.
        utilization: hasRuns ? Math.min(1, (runTime.mean * piscina.completed) / (piscina.duration * threads)) : 0,
        runTimeP50: hasRuns ? runTime.p50 : 0,
        runTimeP95: hasRuns ? percentile(runTime, 95) : 0,
        runTimeP99: hasRuns ? runTime.p99 : 0,
        waitTimeP50: wait('both', 0.5),
        waitTimeP95: wait('both', 0.95),
        highWaitTimeP95: wait('high', 0.95),
      };
    },

    close() {
      closing ??= (async () => {
        // Tasks still waiting never reach a thread: they fail as aborted, as piscina's own queue did on close.
        for (const lane of ['high', 'normal'] as const) {
          for (let w = take(lane); w; w = take(lane)) w.reject(Object.assign(new Error('The task has been aborted'), { name: 'AbortError' }));
        }
        await piscina.close();
      })();
      return closing;
    },
  };
}

function abortError(signal: AbortSignal): Error {
  const reason = signal.reason as unknown;
  return reason instanceof Error && reason.name === 'AbortError' ? reason : Object.assign(new Error('The task has been aborted', { cause: reason }), { name: 'AbortError' });
}

// piscina's summary has p90 and p97.5 but no p95: interpolate between them.
function percentile(summary: { p90: number; p97_5: number }, p: 95): number {
  return summary.p90 + ((summary.p97_5 - summary.p90) * (p - 90)) / 7.5;
}

function mapError(err: unknown, input: RiskInput): unknown {
  if (!(err instanceof Error)) return err;
  // Aborts (caller's signal, or the pool closing) pass through untouched.
  if (err.name === 'AbortError') return err;
  const exited = /^worker exited with code: (-?\d+)/.exec(err.message);
  if (exited || err.message === 'Terminating worker thread') {
    const code = exited ? Number(exited[1]) : undefined;
    return new RiskWorkerCrashedError(
      `risk worker thread died while scoring application ${input.applicationId}: ${err.message}`,
      code,
      { cause: err },
    );
  }
  if (err.message === 'Task queue is at limit') {
    return new RiskPoolBusyError('risk pool queue is full', { cause: err });
  }
  return new RiskScoringError(
    `risk scoring failed for application ${input.applicationId}: ${err.message}`,
    err.name === 'RangeError',
    { cause: err },
  );
}

// ---------------------------------------------------------------------------
// Measurement helpers for risk-model.bench.ts and the later benchmarks.

/** A deterministic, varied application (revenue, age, debt, amount, term) for benchmarks. `sampleRiskInput(7)` */
export function sampleRiskInput(i: number, termMonths = 24): RiskInput {
  const revenues = [180_000, 420_000, 900_000, 2_500_000];
  const years = [1, 2, 4, 7, 12];
  const debtShares = [0, 0, 0.15, 0.3, 0.6];
  const amountShares = [0.04, 0.08, 0.12, 0.2, 0.3];
  const annualRevenue = revenues[i % revenues.length]!;
  return {
    applicationId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    // The +i keeps every sample's seed distinct.
    amount: Math.round(annualRevenue * amountShares[(i >> 2) % amountShares.length]!) + i,
    currency: 'EUR',
    termMonths,
    financials: {
      annualRevenue,
      yearsTrading: years[(i * 7) % years.length]!,
      existingDebt: Math.round(annualRevenue * debtShares[(i * 3) % debtShares.length]!),
    },
  };
}

export type CpuPerScore = {
  samples: number;
  cpuMsMean: number;
  cpuMsP50: number;
  cpuMsP95: number;
  cpuMsMax: number;
};

/** CPU ms of scoreApplication on the calling thread (blocks it: benchmarks only). `measureCpuPerScore({ samples: 50 })` */
export function measureCpuPerScore(options: { samples?: number; warmup?: number; input?: (i: number) => RiskInput } = {}): CpuPerScore {
  const samples = options.samples ?? 50;
  const input = options.input ?? ((i: number) => sampleRiskInput(i));
  // The first scores run in V8's interpreter; warm up so the number is the steady state.
  for (let i = 0; i < (options.warmup ?? 5); i++) scoreApplication(input(samples + i));
  const cpu: number[] = [];
  for (let i = 0; i < samples; i++) cpu.push(scoreApplication(input(i)).cpuMs);
  cpu.sort((a, b) => a - b);
  return {
    samples,
    cpuMsMean: round(cpu.reduce((s, x) => s + x, 0) / samples),
    cpuMsP50: round(quantile(cpu, 0.5)),
    cpuMsP95: round(quantile(cpu, 0.95)),
    cpuMsMax: round(cpu[cpu.length - 1] ?? 0),
  };
}

export type PoolThroughput = {
  threads: number;
  tasks: number;
  wallMs: number;
  scoresPerSecond: number;
  cpuMsMean: number;
  runTimeP50: number;
  runTimeP95: number;
  waitTimeP95: number;
  utilization: number;
  /** Longest gap between event-loop turns on the calling thread while the pool ran. */
  mainThreadMaxLagMs: number;
};

/** Scores per second through a fresh pool of `threads`. `await measurePoolThroughput({ threads: 2, tasks: 200 })` */
export async function measurePoolThroughput(options: { threads?: number; tasks?: number; input?: (i: number) => RiskInput } = {}): Promise<PoolThroughput> {
  const threads = Math.max(1, Math.floor(options.threads ?? availableParallelism()));
  const tasks = options.tasks ?? 200;
  const input = options.input ?? ((i: number) => sampleRiskInput(i));
  const pool = createRiskPool({ threads });
  try {
    // Warm every thread's JIT before timing.
    await Promise.all(Array.from({ length: threads * 3 }, (_, i) => pool.score(input(tasks + i))));
    const before = pool.stats().completed;

    let maxLag = 0;
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      maxLag = Math.max(maxLag, now - last);
      last = now;
    }, 5);

    const started = performance.now();
    const results = await Promise.all(Array.from({ length: tasks }, (_, i) => pool.score(input(i))));
    const wallMs = performance.now() - started;
    clearInterval(ticker);

    const stats = pool.stats();
    return {
      threads,
      tasks: stats.completed - before,
      wallMs: round(wallMs),
      scoresPerSecond: round((tasks / wallMs) * 1000),
      cpuMsMean: round(results.reduce((s, r) => s + r.cpuMs, 0) / tasks),
      runTimeP50: round(stats.runTimeP50),
      runTimeP95: round(stats.runTimeP95),
      waitTimeP95: round(stats.waitTimeP95),
      utilization: round(stats.utilization),
      mainThreadMaxLagMs: round(maxLag),
    };
  } finally {
    await pool.close();
  }
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
