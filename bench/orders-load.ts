// The intake load of bench:intake, shared with the CI budget (bench/budget/): sustained
// POST /api/orders from autocannon, and the bare-insert reference as a child process.
import { fork } from 'node:child_process';
import autocannon from 'autocannon';
import { freePort } from '../services/testing/index.ts';
import { cpuSeconds, snapshot } from './proc-cpu.ts';

export type LoadRow = { rps: number; p50: number; p99: number; errors: number; non2xx: number; cpuUs: number };
/** Which processes count as the server side for CPU per order (see proc-cpu.ts). */
export type Side = (p: { pid: number; cmd: string }) => boolean;

/**
 * POST /api/orders as fast as it goes (or at `rate`/s) for `duration` s; CPU per request of
 * the processes `side` picks. `await loadOrders(url, { duration: 10, side, token })`
 */
export async function loadOrders(url: string, opts: { duration: number; connections?: number; rate?: number; side?: Side; token?: string }): Promise<LoadRow> {
  const before = snapshot();
  const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  let n = 0;
  const result = await autocannon({
    url: `${url}/api/orders`, connections: opts.connections ?? 32, duration: opts.duration,
    ...(opts.rate ? { overallRate: opts.rate } : {}),
    requests: [{
      method: 'POST', headers: { 'content-type': 'application/json', ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) },
      setupRequest: (req: any) => ({ ...req, body: JSON.stringify({ orderId: `B-${run}-${n++}`, email: 'bench@example.com', paymentToken: 'tok_visa', items: [{ sku: 'SKU-1', quantity: 1 }, { sku: 'SKU-2', quantity: 3 }] }) }),
    }],
  });
  const cpuUs = opts.side ? (cpuSeconds(before, snapshot(), opts.side) / Math.max(1, result.requests.total)) * 1e6 : NaN;
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.timeouts, non2xx: result.non2xx, cpuUs };
}

/** The reference: bare-insert.ts (a bare Hono route, one INSERT, the same pool) on a free port. */
export async function startBareInsert(databaseUrl: string): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const port = await freePort();
  const child = fork(new URL('./bare-insert.ts', import.meta.url).pathname, { env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(port) }, stdio: 'inherit' });
  const exited = new Promise((r) => child.once('exit', r));
  await new Promise((resolve, reject) => { child.once('message', resolve); child.once('exit', (code) => reject(new Error(`bare-insert exited with ${code}`))); });
  return {
    url: `http://127.0.0.1:${port}`, pid: child.pid!,
    async stop() { child.kill('SIGTERM'); await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000).unref())]); child.kill('SIGKILL'); },
  };
}
