// bench:edge: POST /api/orders through the gateway target (a process of its own, as in
// Kubernetes: Ingress -> gateway -> orders) with token verification and the rate limiter,
// against the same intake without them, and the bare-insert reference, in one run.
// "With them": `node services/main.ts` (TARGET=orders,admin,identity), every request's
// Ed25519 token verified (the verifier's cache as in production) and the limiter on (its
// limits set far above the offered load, so it counts and never refuses). "Without them":
// bench/edge-server.ts, the same runtime taking any token unchecked, RATE_LIMIT_RPS=0 (off).
// Each reached through its own gateway process and also directly; the gateway pairs run
// alternately (ABAB..., BENCH_EDGE_ROUNDS of each) so the box's noise falls on both.
// CPU per order counts the gateway, the service, Postgres and nats-server, not autocannon.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import autocannon from 'autocannon';
import { createTestDatabase, eventually, freePort, login, startTestNats } from '../services/testing/index.ts';
import { cpuSeconds, snapshot } from './proc-cpu.ts';

const DURATION = Number(process.env.BENCH_DURATION_S ?? 15);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const ROUNDS = Number(process.env.BENCH_EDGE_ROUNDS ?? 3);
// Shaped like a JWT, as the bearer parser wants; edge-server.ts takes it unchecked.
const UNCHECKED = 'bench.unchecked.token';

type Result = { rps: number; p50: number; p99: number; bad: number; cpuUs: number };
const children: ChildProcess[] = [];
process.on('exit', () => { for (const ch of children) if (ch.exitCode === null) ch.kill('SIGKILL'); });

const nats = await startTestNats();
const db = await createTestDatabase('orderflow_bench');
// The processes a run's CPU is charged to: the servers in its path, Postgres (backends of
// this database and the shared WAL writer and checkpointer) and this run's nats-server.
const sideOf = (pids: () => number[]) => ({ pid, cmd }: { pid: number; cmd: string }) =>
  pids().includes(pid) || cmd.includes(db.name) || /^postgres: (walwriter|checkpointer|background writer)/.test(cmd) ||
  (cmd.startsWith('nats-server') && cmd.includes(` -p ${nats.port} `));

async function load(url: string, pids: number[], token?: string, duration = DURATION): Promise<Result> {
  const before = snapshot();
  const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  let n = 0;
  const r = await autocannon({
    url: `${url}/api/orders`, connections: CONNECTIONS, duration,
    requests: [{
      method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      setupRequest: (req: any) => ({ ...req, body: JSON.stringify({ orderId: `E-${run}-${n++}`, email: 'bench@example.com', paymentToken: 'tok_visa', items: [{ sku: 'SKU-1', quantity: 1 }, { sku: 'SKU-2', quantity: 3 }] }) }),
    }],
  });
  const cpuUs = (cpuSeconds(before, snapshot(), sideOf(() => pids)) / Math.max(1, r.requests.total)) * 1e6;
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, bad: r.errors + r.timeouts + r.non2xx, cpuUs };
}

async function start(script: string, env: Record<string, string>): Promise<{ url: string; pid: number }> {
  const port = await freePort();
  const child = spawn(process.execPath, [new URL(script, import.meta.url).pathname], {
    env: { ...process.env, NATS_URL: nats.url, DATABASE_URL: db.url, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'error', ...env },
    stdio: 'inherit',
  });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await eventually(async () => (await fetch(`${url}/readyz`).catch(() => null))?.ok, { timeoutMs: 60_000, what: `${script} ready` });
  return { url, pid: child.pid! };
}

try {
  // The reference: bare Hono, one INSERT through a pool.
  const barePort = await freePort();
  const bare = fork(new URL('./bare-insert.ts', import.meta.url).pathname, { env: { ...process.env, DATABASE_URL: db.url, PORT: String(barePort) }, stdio: 'inherit' });
  children.push(bare);
  await new Promise((r) => bare.once('message', r));
  const bareUrl = `http://127.0.0.1:${barePort}`;
  await load(bareUrl, [bare.pid!], undefined, 3);
  const reference = await load(bareUrl, [bare.pid!]);
  bare.kill('SIGTERM');

  const withThem = await start('../services/main.ts', { TARGET: 'orders,admin,identity', RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000', RATE_LIMIT_ANON_RPS: '1000000' });
  const without = await start('./edge-server.ts', { TARGET: 'orders,admin', RATE_LIMIT_RPS: '0', RATE_LIMIT_ANON_RPS: '0' });
  // A gateway per service process, so each pair's path is gateway -> its own orders.
  const gateway = (upstream: string) => start('../services/main.ts', { TARGET: 'gateway', GATEWAY_UPSTREAMS: `orders=${upstream},identity=${upstream}` });
  const gwWith = await gateway(withThem.url);
  const gwWithout = await gateway(without.url);
  const token = await login(gwWith.url);

  const paths = {
    with: { url: gwWith.url, pids: [gwWith.pid, withThem.pid], token },
    without: { url: gwWithout.url, pids: [gwWithout.pid, without.pid], token: UNCHECKED },
  };
  for (const p of Object.values(paths)) await load(p.url, p.pids, p.token, 3); // warm-up
  const rounds: Record<'with' | 'without', Result[]> = { with: [], without: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const k of (r % 2 ? ['without', 'with'] : ['with', 'without']) as ('with' | 'without')[]) rounds[k].push(await load(paths[k].url, paths[k].pids, paths[k].token));
  }
  const directWith = await load(withThem.url, [withThem.pid], token);
  const directWithout = await load(without.url, [without.pid], UNCHECKED);

  const median = (xs: number[]) => { const v = [...xs].sort((a, b) => a - b); return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2; };
  const summary = (rs: Result[]): Result => ({ rps: median(rs.map((r) => r.rps)), p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)), bad: rs.reduce((t, r) => t + r.bad, 0), cpuUs: median(rs.map((r) => r.cpuUs)) });
  const w = summary(rounds.with);
  const wo = summary(rounds.without);
  const line = (name: string, r: Result, each?: Result[]) =>
    `| ${name} | ${r.rps.toFixed(0)}${each ? ` (${each.map((x) => x.rps.toFixed(0)).join(', ')})` : ''} | ${r.p50} | ${r.p99} | ${r.bad} | ${r.cpuUs.toFixed(0)}${each ? ` (${each.map((x) => x.cpuUs.toFixed(0)).join(', ')})` : ''} |`;
  console.log([
    '',
    '## edge',
    '',
    `Machine: ${availableParallelism()} cores (${cpus()[0]?.model ?? 'cpu'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, nats-server 2.9.10, PostgreSQL 15; autocannon (${CONNECTIONS} connections, ${DURATION} s a run) on the same machine; load average at the end ${loadavg().map((x) => x.toFixed(1)).join(' ')}.`,
    '',
    '| path | accepted/s (median; each run) | p50 ms | p99 ms | errors + non-2xx | CPU µs/order: gateway, service, Postgres, NATS (median; each run) |',
    '|---|---|---:|---:|---:|---|',
    line('reference: bare Hono route, one INSERT', reference),
    line(`gateway -> orders, tokens verified, limiter on (${ROUNDS} runs)`, w, rounds.with),
    line(`gateway -> orders, no verification, limiter off (${ROUNDS} runs)`, wo, rounds.without),
    line('orders directly, tokens verified, limiter on', directWith),
    line('orders directly, no verification, limiter off', directWithout),
    '',
    `Through the gateway, with ÷ without verification and the limiter: throughput **${((w.rps / wo.rps) * 100).toFixed(0)}%** (target ≥ 80%), CPU per order ${(w.cpuUs / wo.cpuUs).toFixed(2)}×. Directly: ${((directWith.rps / directWithout.rps) * 100).toFixed(0)}%. The gateway hop (with them): through it ÷ directly ${((w.rps / directWith.rps) * 100).toFixed(0)}% of the throughput, ${(w.cpuUs - directWith.cpuUs).toFixed(0)} µs more CPU per order. Gateway path ÷ reference: ${((w.rps / reference.rps) * 100).toFixed(0)}%.`,
  ].join('\n'));
} finally {
  for (const ch of children) if (ch.exitCode === null) ch.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 1000));
  await nats.stop();
  await db.drop();
}
