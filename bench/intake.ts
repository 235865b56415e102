// bench:intake: sustained POST /api/orders against the real cluster (a child process),
// compared in the same run with a bare Hono route doing one INSERT through the same pool;
// then order-accepted to SMTP-accepted latency at 200 orders/s with 30% of first attempts
// answered 451.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism, cpus, totalmem } from 'node:os';
import autocannon from 'autocannon';
import { createTestDatabase, eventually, freePort, login, startTestNats, withIdentity } from '../services/testing/index.ts';
import { startSmtpSink } from '../services/simulators/smtp-sink.ts';
import { cpuSeconds, snapshot } from './proc-cpu.ts';
import { startOtlpReceiver } from './otlp-receiver.ts';

const DURATION = Number(process.env.BENCH_DURATION_S ?? 20);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);

type Row = { name: string; rps: number; p50: number; p95?: number; p99: number; errors: number; non2xx: number; cpuUs: number };

// CPU per accepted order of the server under test, Postgres and nats-server (not the load generator).
let serverPid = 0;
// Postgres backends name their database in the process title; the WAL and checkpoint
// processes serve everyone and are counted whole.
const sideOf = (pid: () => number, dbName: () => string, natsPort: () => number) => ({ pid: p, cmd }: { pid: number; cmd: string }) =>
  p === pid() || cmd.includes(dbName()) || /^postgres: (walwriter|checkpointer|background writer)/.test(cmd) ||
  (cmd.startsWith('nats-server') && cmd.includes(` -p ${natsPort()} `));
const serverSide = sideOf(() => serverPid, () => db.name, () => nats.port);

// BENCH_COMPARE_TREE=/path/to/another/checkout (with its node_modules) also runs that code's
// intake (TARGET=orders,admin, its own database and nats-server), alternating ceiling runs
// with this code's, BENCH_COMPARE_ROUNDS (3) of each: a same-run comparison, e.g. against the
// commit before a change (git worktree add ../old <commit>).
const COMPARE_TREE = process.env.BENCH_COMPARE_TREE;
const COMPARE_ROUNDS = Number(process.env.BENCH_COMPARE_ROUNDS ?? 3);
// BENCH_COMPARE_TRACING=ratio instead compares this code with itself tracing that share of
// the orders (parentbased_traceidratio), exporting by OTLP/HTTP protobuf to a receiver in this
// process (otlp-receiver.ts), the same alternation: what tracing costs intake.
const COMPARE_TRACING = process.env.BENCH_COMPARE_TRACING;

async function load(url: string, opts: { rate?: number; duration?: number; connections?: number; side?: typeof serverSide; token?: string } = {}): Promise<Omit<Row, 'name'>> {
  const before = snapshot();
  const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  let n = 0;
  const result = await autocannon({
    url: `${url}/api/orders`, connections: opts.connections ?? CONNECTIONS, duration: opts.duration ?? DURATION,
    ...(opts.rate ? { overallRate: opts.rate } : {}),
    requests: [{
      method: 'POST', headers: { 'content-type': 'application/json', ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) },
      setupRequest: (req: any) => ({ ...req, body: JSON.stringify({ orderId: `B-${run}-${n++}`, email: 'bench@example.com', paymentToken: 'tok_visa', items: [{ sku: 'SKU-1', quantity: 1 }, { sku: 'SKU-2', quantity: 3 }] }) }),
    }],
  });
  const cpuUs = (cpuSeconds(before, snapshot(), opts.side ?? serverSide) / Math.max(1, result.requests.total)) * 1e6;
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.timeouts, non2xx: result.non2xx, cpuUs };
}

async function waitReady(url: string, path = '/readyz') {
  await eventually(async () => (await fetch(url + path).catch(() => null))?.ok, { timeoutMs: 60_000, what: url });
}

const nats = await startTestNats();
const db = await createTestDatabase('orderflow_bench');
const children: ChildProcess[] = [];
const stopAll = async () => {
  await Promise.all(children.filter((c) => c.exitCode === null && c.signalCode === null).map((c) => new Promise((r) => { c.once('exit', r); c.kill('SIGTERM'); setTimeout(() => { c.kill('SIGKILL'); r(null); }, 30_000).unref(); })));
  await nats.stop();
  await db.drop();
};

try {
  // 1. The reference ceiling: bare Hono + one INSERT.
  const barePort = await freePort();
  const bare = fork(new URL('./bare-insert.ts', import.meta.url).pathname, { env: { ...process.env, DATABASE_URL: db.url, PORT: String(barePort) }, stdio: 'inherit' });
  children.push(bare);
  serverPid = bare.pid!;
  await new Promise((r) => bare.once('message', r));
  await load(`http://127.0.0.1:${barePort}`, { duration: 3 }); // warm-up
  const bareRow = await load(`http://127.0.0.1:${barePort}`);
  bare.kill('SIGTERM');

  // 2. orderflow. First intake alone (TARGET=orders,admin: validation, the order and its
  // outbox row, the relay publishing to JetStream), then the whole of seed 004 in one
  // process (notifications sending every mail on the same two cores).
  const sink = await startSmtpSink({ port: 0 });
  // `tree.root` unset: this code, on tree's own NATS and database, with tree.env added (the tracing comparison).
  const startCluster = async (target: string, tree?: { root?: string; natsUrl: string; dbUrl: string; env?: Record<string, string> }) => {
    const port = await freePort();
    const older = Boolean(tree?.root);
    const proc = spawn(process.execPath, [older ? `${tree!.root}/services/main.ts` : new URL('../services/main.ts', import.meta.url).pathname], {
      // identity too: every /api route takes a token (the development admin's, logged in once below);
      // an older tree compared against may have no identity, and then takes no token. The rate
      // limits would throttle the one bench principal: this bench measures intake, not them.
      env: {
        ...process.env, NATS_URL: tree?.natsUrl ?? nats.url, DATABASE_URL: tree?.dbUrl ?? db.url, PORT: String(port), HOST: '127.0.0.1', SMTP_URL: sink.url, LOG_LEVEL: 'error',
        TARGET: older ? target : withIdentity(target), RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000', ...tree?.env,
      },
      stdio: 'inherit', ...(older ? { cwd: tree!.root } : {}),
    });
    children.push(proc);
    serverPid = proc.pid!;
    const url = `http://127.0.0.1:${port}`;
    await waitReady(url);
    const token = older ? undefined : await login(url);
    return { url, proc, token, stop: async () => { proc.kill('SIGTERM'); await new Promise((r) => proc.once('exit', r)); } };
  };
  const intake = await startCluster('orders,admin');
  await load(intake.url, { duration: 3, token: intake.token });
  const intakeCeiling = await load(intake.url, { token: intake.token });
  const intakeAtTarget = await load(intake.url, { rate: 2000, token: intake.token });

  // This code's ceiling against BENCH_COMPARE_TREE's, alternating (ABBA...), both processes up.
  const receiver = COMPARE_TRACING ? await startOtlpReceiver() : undefined;
  const compared: { rounds: Omit<Row, 'name'>[][]; tree: string } | undefined = COMPARE_TREE ? { rounds: [[], []], tree: COMPARE_TREE }
    : receiver ? { rounds: [[], []], tree: `this checkout, tracing ${COMPARE_TRACING} of the orders to an OTLP receiver` } : undefined;
  if (compared) {
    const [otherNats, otherDb] = [await startTestNats(), await createTestDatabase('orderflow_bench')];
    const thisPid = intake.proc.pid!;
    const other = await startCluster('orders,admin', receiver
      ? { natsUrl: otherNats.url, dbUrl: otherDb.url, env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: COMPARE_TRACING! } }
      : { root: compared.tree, natsUrl: otherNats.url, dbUrl: otherDb.url });
    const sides = [sideOf(() => thisPid, () => db.name, () => nats.port), sideOf(() => other.proc.pid!, () => otherDb.name, () => otherNats.port)];
    const urls = [intake.url, other.url];
    const tokens = [intake.token, other.token];
    // Both warm, and this one's relay done with the 2,000/s phase's rows, before the first round.
    for (const [i, u] of urls.entries()) await load(u, { duration: 3, token: tokens[i] });
    for (let r = 0; r < COMPARE_ROUNDS; r++) {
      for (const i of r % 2 ? [1, 0] : [0, 1]) compared.rounds[i]!.push(await load(urls[i]!, { side: sides[i], token: tokens[i] }));
    }
    await other.stop();
    await otherNats.stop();
    await otherDb.drop();
  }
  await intake.stop();

  const full = await startCluster('orders,notifications,admin');
  const url = full.url;
  const ceiling = await load(url, { token: full.token });

  // 3. Order accepted (202) to SMTP accepted, at 200 orders/s, 30% of first attempts 451.
  // Let the mails of the throughput runs drain first, so this phase measures latency, not backlog.
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connect({ servers: nats.url });
  const jsm = await jetstreamManager(nc);
  await eventually(async () => {
    const outbox = (await fetch(`${url}/metrics`).then((r) => r.text())).match(/orderflow_outbox_pending (\d+)/)?.[1] === '0';
    const ci = await jsm.consumers.info('ORDERS', 'notifications');
    return outbox && ci.num_pending === 0 && ci.num_ack_pending === 0;
  }, { timeoutMs: 600_000, intervalMs: 1000, what: 'mail backlog drained' });
  await nc.close();
  sink.clear();
  sink.setFaults({ tempFailRate: 0.3, seed: 42 });
  // A fresh token: the drain above may outlast the first one (10 minutes).
  const token = await login(url);
  const acceptedAt = new Map<string, number>();
  const RATE = 200;
  const SECONDS = Number(process.env.BENCH_MAIL_SECONDS ?? 15);
  const started = performance.now();
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < RATE * SECONDS; i++) {
    const due = started + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    inflight.push((async () => {
      const res = await fetch(`${url}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ orderId: `M-${i}-${started}`, email: 'lat@example.com', paymentToken: 'tok_visa', items: [{ sku: 'SKU-1', quantity: 1 }] }) });
      if (res.status === 202) acceptedAt.set((await res.json()).id, Date.now());
    })());
  }
  await Promise.all(inflight);
  const ids = [...acceptedAt.keys()];
  const msgFor = (id: string) => sink.byMessageId(`<${id}.received@orderflow>`);
  await eventually(() => ids.every((id) => msgFor(id)), { timeoutMs: 180_000, what: 'every mail' });
  const lat = ids.map((id) => new Date(msgFor(id)!.receivedAt).getTime() - acceptedAt.get(id)!).sort((a, b) => a - b);
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))]!;
  const dupes = sink.stats().duplicates;

  const cpu = cpus()[0]?.model ?? 'unknown';
  const table = [
    `Machine: ${availableParallelism()} cores (${cpu}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, nats-server 2.9.10, PostgreSQL 15; load generator (autocannon, ${CONNECTIONS} connections, ${DURATION} s) on the same machine.`,
    '',
    '| run | accepted/s | p50 ms | p99 ms | errors | non-2xx | server CPU µs/order |',
    '|---|---:|---:|---:|---:|---:|---:|',
    `| reference: bare Hono route, one INSERT, same pool | ${bareRow.rps.toFixed(0)} | ${bareRow.p50} | ${bareRow.p99} | ${bareRow.errors} | ${bareRow.non2xx} | ${bareRow.cpuUs.toFixed(0)} |`,
    `| orderflow intake (TARGET=orders,admin; relay publishing to JetStream), as fast as it goes | ${intakeCeiling.rps.toFixed(0)} | ${intakeCeiling.p50} | ${intakeCeiling.p99} | ${intakeCeiling.errors} | ${intakeCeiling.non2xx} | ${intakeCeiling.cpuUs.toFixed(0)} |`,
    `| orderflow intake, offered 2,000/s | ${intakeAtTarget.rps.toFixed(0)} | ${intakeAtTarget.p50} | ${intakeAtTarget.p99} | ${intakeAtTarget.errors} | ${intakeAtTarget.non2xx} | ${intakeAtTarget.cpuUs.toFixed(0)} |`,
    `| orderflow intake + notifications in one process (every order also mailed), as fast as it goes | ${ceiling.rps.toFixed(0)} | ${ceiling.p50} | ${ceiling.p99} | ${ceiling.errors} | ${ceiling.non2xx} | ${ceiling.cpuUs.toFixed(0)} |`,
    '',
    `orderflow intake ceiling / reference ceiling: **${((intakeCeiling.rps / bareRow.rps) * 100).toFixed(0)}%** (target ≥ 70%); with notifications in the same process: ${((ceiling.rps / bareRow.rps) * 100).toFixed(0)}%.`,
    `By CPU per order (server, Postgres and nats-server; steadier than throughput on a shared machine): reference / orderflow intake = **${((bareRow.cpuUs / intakeCeiling.cpuUs) * 100).toFixed(0)}%**.`,
    '',
    `| order accepted → SMTP accepted, ${RATE} orders/s for ${SECONDS} s, 30% of first attempts 451 | p50 ms | p95 ms | p99 ms | max ms | mails | duplicates |`,
    '|---|---:|---:|---:|---:|---:|---:|',
    `| received mail | ${pct(50)} | ${pct(95)} | ${pct(99)} | ${lat[lat.length - 1]} | ${lat.length} | ${dupes} |`,
  ].join('\n');
  console.log(`\n${table}\n`);
  if (compared) {
    // Medians: on a shared machine one run now and then meets a burst of other work.
    const median = (rows: Omit<Row, 'name'>[], k: 'rps' | 'cpuUs') => { const v = rows.map((r) => r[k]).sort((a, b) => a - b); return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2; };
    const [mine, theirs] = compared.rounds as [Omit<Row, 'name'>[], Omit<Row, 'name'>[]];
    const fmt = (rows: Omit<Row, 'name'>[], k: 'rps' | 'cpuUs') => rows.map((r) => r[k].toFixed(0)).join(', ');
    console.log([
      `Same run, intake ceiling (TARGET=orders,admin) alternating with ${receiver ? '' : 'BENCH_COMPARE_TREE='}${compared.tree}, ${COMPARE_ROUNDS} runs of ${DURATION} s each:`,
      '',
      '| code | accepted/s, each run | median | server CPU µs/order (server, Postgres, nats-server), each run | median |',
      '|---|---|---:|---|---:|',
      `| this checkout | ${fmt(mine, 'rps')} | ${median(mine, 'rps').toFixed(0)} | ${fmt(mine, 'cpuUs')} | ${median(mine, 'cpuUs').toFixed(0)} |`,
      `| ${compared.tree} | ${fmt(theirs, 'rps')} | ${median(theirs, 'rps').toFixed(0)} | ${fmt(theirs, 'cpuUs')} | ${median(theirs, 'cpuUs').toFixed(0)} |`,
      '',
      `this ÷ compared, medians: accepted/s ${(median(mine, 'rps') / median(theirs, 'rps')).toFixed(2)}, CPU per order **${(median(mine, 'cpuUs') / median(theirs, 'cpuUs')).toFixed(2)}**.`,
      ...(receiver ? [`The receiver got ${receiver.stats().requests} exports, ${(receiver.stats().bytes / 1e6).toFixed(1)} MB.`] : []),
    ].join('\n') + '\n');
  }
  await sink.close();
  await receiver?.close();
} finally {
  await stopAll();
}
