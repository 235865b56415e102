// The pieces of bench:saga that the CI budget (bench/budget/) runs too: the cluster as a
// child process, and the driver that offers orders at a steady rate and times each one
// from its 202 to its saga.done event.
import { spawn, type ChildProcess } from 'node:child_process';
import type { NatsConnection } from '@nats-io/transport-node';
import { eventually, freePort, login, withIdentity } from '../services/testing/index.ts';
import { request } from './http-client.ts';

export type Env = Record<string, string>;
export type BenchCluster = { url: string; pid: number; token?: string; stop(): Promise<void> };

export const pct = (xs: number[], p: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `node services/main.ts` as a child (pushed on `children`, for the caller to reap); the
 * process that serves orders runs identity too and comes back with the development
 * admin's token, good in every process on the same database.
 */
export async function startBenchCluster(env: Env, children: ChildProcess[]): Promise<BenchCluster> {
  const port = await freePort();
  const edge = !env.TARGET || env.TARGET.split(',').includes('orders');
  const child = spawn(process.execPath, [new URL('../services/main.ts', import.meta.url).pathname], {
    // The limiter runs, out of the way: one bench principal and one address send everything.
    env: { ...process.env, LOG_LEVEL: 'warn', RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000', RATE_LIMIT_ANON_RPS: '1000000', ...env, ...(edge ? { TARGET: withIdentity(env.TARGET) ?? 'all' } : {}), PORT: String(port), HOST: '127.0.0.1' }, stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await eventually(async () => {
    if (child.exitCode !== null) throw new Error(`cluster (TARGET=${env.TARGET}) exited with ${child.exitCode}`);
    return (await fetch(`${url}/readyz`).catch(() => null))?.ok;
  }, { timeoutMs: 60_000, what: 'cluster ready' });
  // Ready means provisioned; routes answer 503 until every service is mounted.
  let token: string | undefined;
  if (edge) {
    token = await eventually(async () => await login(url).catch(() => undefined), { timeoutMs: 60_000, what: 'development admin logged in' });
    await eventually(async () => (await fetch(`${url}/api/orders/00000000-0000-0000-0000-000000000000`, { headers: { authorization: `Bearer ${token}` } }).catch(() => null))?.status === 404, { timeoutMs: 60_000, what: 'routes mounted' });
  }
  return {
    url, pid: child.pid!, token,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(30_000)]);
    },
  };
}

export type Item = { sku: string; quantity: number };
export type DriveResult = Awaited<ReturnType<ReturnType<typeof sagaDriver>['drive']>>;

/**
 * Orders at a steady offered rate through `url`, each timed from its send to the first
 * saga.done.* event for it on `nc`. `const { drive } = sagaDriver({ url, token, nc }); await drive({ rate: 60, seconds: 20, items })`
 */
export function sagaDriver(opts: { url: string; token?: string; nc: NatsConnection }) {
  const doneAt = new Map<string, { at: number; status: string }>();
  const sub = opts.nc.subscribe('saga.done.>', {
    callback: (_err, m) => {
      const e = m.json<{ id: string; status: string }>();
      if (!doneAt.has(e.id)) doneAt.set(e.id, { at: performance.now(), status: e.status });
    },
  });
  const post = (path: string, body: unknown) => request(opts.url + path, { method: 'POST', body, token: opts.token });

  async function drive(d: { rate: number; seconds?: number; count?: number; items: (i: number) => Item[]; token?: (i: number) => string; finishWithinMs?: number }) {
    const acceptedAt = new Map<string, number>();
    const total = d.count ?? Math.round(d.rate * (d.seconds ?? 0));
    const started = performance.now();
    const inflight = new Set<Promise<void>>();
    let errors = 0;
    const run = Math.random().toString(36).slice(2, 8);
    let lastSentAt = started;
    for (let i = 0; i < total; i++) {
      const due = started + (i * 1000) / d.rate;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      const sentAt = performance.now();
      lastSentAt = sentAt;
      const p = (async () => {
        try {
          const r = await post('/api/orders', { orderId: `S-${run}-${i}`, email: 'bench@example.com', phone: i % 2 ? '+15550002222' : undefined, paymentToken: d.token?.(i) ?? 'tok_visa', items: d.items(i) });
          if (r.status === 202) acceptedAt.set(r.body.id, sentAt); else errors++;
        } catch { errors++; }
      })();
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
    }
    await Promise.all(inflight);
    const offeredSeconds = (performance.now() - started) / 1000;
    // What the generator managed: the rate of its sends (timers on a busy box can lag).
    const sentPerSecond = total > 1 ? (total - 1) / ((lastSentAt - started) / 1000) : NaN;
    const finishWithinMs = d.finishWithinMs ?? 300_000;
    await eventually(() => [...acceptedAt.keys()].every((id) => doneAt.has(id)), { timeoutMs: finishWithinMs, intervalMs: 250, what: 'every saga finished' })
      .catch(() => console.error(`not every saga finished within ${finishWithinMs / 1000} s`));
    const lat = [...acceptedAt].filter(([id]) => doneAt.has(id)).map(([id, at]) => doneAt.get(id)!.at - at);
    const lastDone = Math.max(...[...acceptedAt.keys()].map((id) => doneAt.get(id)?.at ?? 0));
    const finished = [...acceptedAt.keys()].filter((id) => doneAt.has(id));
    // Completions per second in the steady state: over the middle 90% of completions, so
    // neither the ramp-up (the first sagas are still in flight) nor the tail after the last
    // send counts. First send to last completion is kept beside it: a run that kept up
    // shows offered × seconds ÷ (seconds + the last saga's latency) there.
    const doneTimes = finished.map((id) => doneAt.get(id)!.at).sort((a, b) => a - b);
    const lo = Math.floor(doneTimes.length * 0.05);
    const hi = Math.max(lo + 1, Math.ceil(doneTimes.length * 0.95) - 1);
    const steadyPerSecond = doneTimes.length >= 20 ? (hi - lo) / ((doneTimes[hi]! - doneTimes[lo]!) / 1000) : NaN;
    return {
      acceptedAt, errors, offeredSeconds, sentPerSecond, lat, finished,
      shipped: finished.filter((id) => doneAt.get(id)!.status === 'SHIPPED').length,
      steadyPerSecond,
      completedPerSecond: finished.length / ((lastDone - started) / 1000),
    };
  }

  return { drive, doneAt, post, close: () => sub.unsubscribe() };
}
