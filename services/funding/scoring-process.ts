// The scoring pool in a process of its own, started and supervised by the process that
// runs the other targets (issue 14 item 6). In the default `npm start` (TARGET=all) every
// service shares one process; its scoring threads are niced, but Linux schedules a whole
// session's processes as one group (its autogroup) against every other session's, so
// Postgres and NATS then share the CPU with the model as equals, and every request waits
// for them: POST p95 measured ~200 ms at 200/s while scoring ran. A scoring process that
// leads a session of its own lowers its group's priority (lowerSessionPriority in
// scoring.ts), as it does when deployed as its own target (k8s/). So here the
// `funding-scoring` target, instead of starting its pool in this process, starts
// `node services/main.ts` with TARGET=funding-scoring in a new session:
//  - restarted with backoff (1 s doubling to 30 s) whenever it exits unasked;
//  - stopped with SIGTERM (SIGKILL after the shutdown timeout) when this process stops;
//  - it stops itself when this process goes away, however it went (the IPC channel closes);
//  - its scoring metrics (orderflow_funding_risk_*, orderflow_funding_decisions_total) are
//    served on this process's /metrics, fetched over IPC at each scrape.
// FUNDING_SCORING_PROCESS=inline keeps the pool in the process (tests, a debugger),
// =child forces the child with any TARGET; the default is a child for TARGET=all only.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Metric, MetricObjectWithValues, MetricValue, Registry } from 'prom-client';
import type { Deps, Running } from '../kit/index.ts';

const MAIN = new URL('../main.ts', import.meta.url).pathname;
/** Set in the child's environment: it answers metric requests and exits with its parent. */
export const SUPERVISED_ENV = 'FUNDING_SCORING_SUPERVISED';
/** The scoring target's own metrics, served by the supervising process on its behalf. */
export const MIRRORED_METRICS = [
  'orderflow_funding_risk_scores_total', 'orderflow_funding_decisions_total', 'orderflow_funding_risk_cpu_seconds_total', 'orderflow_funding_risk_pool',
] as const;

type MetricsRequest = { type: 'orderflow:metrics'; id: number };
type MetricsReply = { type: 'orderflow:metrics'; id: number; metrics: MetricObjectWithValues<MetricValue<string>>[] };
type ReadyMessage = { type: 'orderflow:ready' };

/** Where the pool runs. `scoringPlacement(deps.env, deps.config.TARGET) // 'child' for TARGET=all` */
export function scoringPlacement(env: Deps['env'], target: string): 'inline' | 'child' {
  if (env[SUPERVISED_ENV] === '1') return 'inline'; // the child itself
  const setting = (env.FUNDING_SCORING_PROCESS ?? 'auto').trim();
  if (setting === 'inline' || setting === 'child') return setting;
  if (setting !== 'auto') throw new Error(`FUNDING_SCORING_PROCESS must be auto, inline or child, not ${setting}`);
  return target.trim() === 'all' ? 'child' : 'inline';
}

/**
 * In the child: answer the supervisor's metric requests and stop (SIGTERM to itself, so the
 * runtime's graceful shutdown runs) when the supervisor disappears. Returns the undo.
 */
export function serveSupervisor(env: Deps['env'], registry: Registry): () => void {
  // Only a child this module started: a test runner's worker has an IPC channel too.
  if (env[SUPERVISED_ENV] !== '1') return () => {};
  // The supervisor went away while this process was booting: nobody will stop it, so stop now.
  if (!process.send || !process.connected) {
    process.kill(process.pid, 'SIGTERM');
    return () => {};
  }
  const onMessage = (m: unknown) => {
    const req = m as MetricsRequest;
    if (req?.type !== 'orderflow:metrics') return;
    void Promise.all(MIRRORED_METRICS.map((name) => registry.getSingleMetric(name)?.get()))
      .then((ms) => process.send?.({ type: 'orderflow:metrics', id: req.id, metrics: ms.filter((x) => x !== undefined) } satisfies MetricsReply))
      .catch(() => {});
  };
  const onDisconnect = () => process.kill(process.pid, 'SIGTERM');
  process.on('message', onMessage);
  process.once('disconnect', onDisconnect);
  process.send({ type: 'orderflow:ready' } satisfies ReadyMessage);
  return () => {
    process.off('message', onMessage);
    process.off('disconnect', onDisconnect);
  };
}

export type ScoringSupervisor = Running & { pid(): number | undefined; restarts(): number };

/**
 * Start and supervise the scoring child. Start-up does not wait for the child to be ready
 * (it boots as any process does: provisioning, migrations) unless `readyTimeoutMs` says so:
 * applications are accepted meanwhile and scored once it runs.
 */
export async function superviseScoringProcess(deps: Deps, opts: { readyTimeoutMs?: number } = {}): Promise<ScoringSupervisor> {
  const log = deps.log.child({ part: 'scoring-process' });
  let child: ChildProcess | undefined;
  let stopping = false;
  let restarts = 0;
  let backoffMs = 1000;
  let restartTimer: NodeJS.Timeout | undefined;
  let nextId = 0;
  const pending = new Map<number, (m: MetricsReply['metrics']) => void>();

  const launch = () => new Promise<void>((resolve) => {
    const startedAt = Date.now();
    const c = spawn(process.execPath, [MAIN], {
      env: { ...process.env, ...deps.env, TARGET: 'funding-scoring', PORT: '0', HOST: '127.0.0.1', [SUPERVISED_ENV]: '1' },
      // A session of its own: its scheduling group can run at a lower priority (see the header).
      detached: true,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child = c;
    const readyTimer = setTimeout(() => { if (opts.readyTimeoutMs) log.warn({ pid: c.pid }, 'scoring process not ready yet; carrying on'); resolve(); }, opts.readyTimeoutMs ?? 0);
    c.on('message', (m: unknown) => {
      const msg = m as ReadyMessage | MetricsReply;
      if (msg?.type === 'orderflow:ready') {
        clearTimeout(readyTimer);
        log.info({ pid: c.pid }, 'scoring process ready');
        resolve();
      } else if (msg?.type === 'orderflow:metrics') {
        pending.get(msg.id)?.(msg.metrics);
        pending.delete(msg.id);
      }
    });
    c.once('exit', (code, signal) => {
      clearTimeout(readyTimer);
      resolve();
      if (child === c) child = undefined;
      if (stopping) return;
      // Healthy for a minute: a later crash starts the backoff afresh.
      if (Date.now() - startedAt > 60_000) backoffMs = 1000;
      log.error({ code, signal, restartInMs: backoffMs }, 'scoring process exited; restarting it');
      restartTimer = setTimeout(() => { restarts++; void launch(); }, backoffMs);
      backoffMs = Math.min(30_000, backoffMs * 2);
    });
    c.on('error', (err) => log.error({ err: String(err) }, 'scoring process failed to start'));
  });

  // One IPC round trip per scrape, shared by the mirrored metrics.
  let snapshot: { at: number; metrics: Promise<MetricsReply['metrics']> } | undefined;
  const childMetrics = () => {
    if (snapshot && Date.now() - snapshot.at < 500) return snapshot.metrics;
    const metrics = new Promise<MetricsReply['metrics']>((resolve) => {
      const c = child;
      if (!c?.connected) return resolve([]);
      const id = ++nextId;
      const timer = setTimeout(() => { pending.delete(id); resolve([]); }, 1000);
      pending.set(id, (m) => { clearTimeout(timer); resolve(m); });
      c.send({ type: 'orderflow:metrics', id } satisfies MetricsRequest, (err) => { if (err) { pending.delete(id); clearTimeout(timer); resolve([]); } });
    });
    snapshot = { at: Date.now(), metrics };
    return metrics;
  };
  for (const name of MIRRORED_METRICS) {
    // A registry entry whose samples are the child's: prom-client formats whatever get() returns.
    const mirror = {
      name, help: `${name} of the supervised scoring process`,
      get: async () => (await childMetrics()).find((m) => m.name === name) ?? { name, help: `${name} (scoring process not answering)`, type: 'gauge', values: [], aggregator: 'sum' },
      reset: () => {},
    };
    deps.metrics.registry.registerMetric(mirror as unknown as Metric<string>);
  }

  await launch();
  return {
    pid: () => child?.pid,
    restarts: () => restarts,
    async stop() {
      stopping = true;
      clearTimeout(restartTimer);
      for (const name of MIRRORED_METRICS) deps.metrics.registry.removeSingleMetric(name);
      const c = child;
      if (!c || c.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), deps.config.SHUTDOWN_TIMEOUT_MS + 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
