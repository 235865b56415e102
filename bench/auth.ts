// bench:auth: POST /api/auth/login throughput and latency with the Argon2id parameters in
// use (OWASP: 19 MiB, 2 passes, 1 lane), against the bare Argon2id rate of this machine
// in the same run (the ceiling); then the CPU cost of verifying one access token with the
// kit's verifier, against one bare Ed25519 signature check.
import { availableParallelism, cpus, totalmem } from 'node:os';
import { randomBytes, verify as edVerify, generateKeyPairSync } from 'node:crypto';
import { OWASP_ARGON2ID, hashPassword, verifyPassword } from '../services/identity/passwords.ts';
import { createVerifier } from '../services/kit/auth.ts';
import { createLogger } from '../services/kit/log.ts';
import { startRuntime } from '../services/kit/runtime.ts';
import { createTestDatabase, startTestNats } from '../services/testing/index.ts';
import { registry, verifier as mainVerifier } from '../services/main.ts';
import { request } from './http-client.ts';

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 15);
const CONCURRENCY = Number(process.env.BENCH_CONNECTIONS ?? 8);
const VERIFICATIONS = Number(process.env.BENCH_VERIFICATIONS ?? 20_000);
const USERS = 32;
const PASSWORD = 'bench password 0123';

const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;
type Row = { name: string; rps: number; p50: number; p95: number; p99: number; errors: number };

/** `concurrency` loops calling `once` for `seconds`; latency in ms. */
async function drive(name: string, seconds: number, concurrency: number, once: (i: number) => Promise<boolean>): Promise<Row> {
  const lat: number[] = [];
  let errors = 0;
  let i = 0;
  const until = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < until) {
      const t = performance.now();
      const ok = await once(i++).catch(() => false);
      lat.push(performance.now() - t);
      if (!ok) errors++;
    }
  }));
  lat.sort((a, b) => a - b);
  return { name, rps: lat.length / ((performance.now() - started) / 1000), p50: pct(lat, 50), p95: pct(lat, 95), p99: pct(lat, 99), errors };
}

const nats = await startTestNats();
const db = await createTestDatabase('orderflow_bench');
const cluster = await startRuntime({
  env: { TARGET: 'identity', NATS_URL: nats.url, DATABASE_URL: db.url, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn', ADMIN_EMAIL: 'bench-admin@example.test', ADMIN_PASSWORD: 'bench admin password',
    // The limiter off: every login comes from one address, and this bench measures Argon2id, not the limits.
    RATE_LIMIT_RPS: '0', RATE_LIMIT_ANON_RPS: '0' },
  registry, verifier: mainVerifier, log: createLogger({ level: 'warn' }),
});
try {
  const emails = Array.from({ length: USERS }, (_, i) => `bench-${i}-${randomBytes(3).toString('hex')}@example.test`);
  for (const email of emails) {
    const r = await request(`${cluster.url}/api/auth/register`, { method: 'POST', body: { email, password: PASSWORD, name: 'Bench' } });
    if (r.status !== 201) throw new Error(`register answered ${r.status}`);
  }
  const phc = await hashPassword(PASSWORD);
  const rows: Row[] = [];
  rows.push(await drive(`bare Argon2id verify (m=${OWASP_ARGON2ID.memory} KiB, t=${OWASP_ARGON2ID.passes}, p=${OWASP_ARGON2ID.parallelism})`, DURATION_S, CONCURRENCY, async () => await verifyPassword(PASSWORD, phc)));
  rows.push(await drive('POST /api/auth/login (right password)', DURATION_S, CONCURRENCY, async (i) =>
    (await request(`${cluster.url}/api/auth/login`, { method: 'POST', body: { email: emails[i % USERS], password: PASSWORD } })).status === 200));

  // Verification: CPU per token, measured in this process, sequentially (JWKS cached after the first).
  const login = await request(`${cluster.url}/api/auth/login`, { method: 'POST', body: { email: emails[0], password: PASSWORD } });
  // Every time in full (maxCachedTokens 0: signature and claims), and as production runs it (a
  // token seen before is answered from the verifier's cache until it expires).
  const jwks = async () => (await request(`${cluster.url}/.well-known/jwks.json`)).body;
  const verifier = createVerifier({ issuer: 'orderflow-identity', audience: 'orderflow', jwks, maxCachedTokens: 0 });
  const cached = createVerifier({ issuer: 'orderflow-identity', audience: 'orderflow', jwks });
  await verifier.verify(login.body.accessToken);
  await cached.verify(login.body.accessToken);
  const cpu = async (n: number, fn: () => unknown) => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let k = 0; k < n; k++) await fn();
    const c = process.cpuUsage(c0);
    return { cpuUs: (c.user + c.system) / n, wallUs: ((performance.now() - t0) * 1000) / n };
  };
  const v = await cpu(VERIFICATIONS, () => verifier.verify(login.body.accessToken));
  const vc = await cpu(VERIFICATIONS, () => cached.verify(login.body.accessToken));
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const msg = Buffer.from(login.body.accessToken.split('.').slice(0, 2).join('.'));
  const sig = (await import('node:crypto')).sign(null, msg, privateKey);
  const bare = await cpu(VERIFICATIONS, () => edVerify(null, msg, publicKey, sig));

  process.stdout.write(`\nmachine: ${cpus()[0]?.model ?? '?'} × ${availableParallelism()}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? 4}; ${CONCURRENCY} concurrent, ${DURATION_S} s each\n\n`);
  process.stdout.write('| what | per s | p50 ms | p95 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|---:|\n');
  for (const r of rows) process.stdout.write(`| ${r.name} | ${r.rps.toFixed(1)} | ${r.p50.toFixed(0)} | ${r.p95.toFixed(0)} | ${r.p99.toFixed(0)} | ${r.errors} |\n`);
  process.stdout.write(`\n| verification (${VERIFICATIONS} sequential) | CPU µs each | wall µs each |\n|---|---:|---:|\n`);
  process.stdout.write(`| kit verifier, every token in full (jose jwtVerify, EdDSA, cached JWKS, all claim checks) | ${v.cpuUs.toFixed(1)} | ${v.wallUs.toFixed(1)} |\n`);
  process.stdout.write(`| kit verifier as in production (a token seen before answered from its cache) | ${vc.cpuUs.toFixed(1)} | ${vc.wallUs.toFixed(1)} |\n`);
  process.stdout.write(`| reference: bare Ed25519 crypto.verify of the same bytes | ${bare.cpuUs.toFixed(1)} | ${bare.wallUs.toFixed(1)} |\n`);
} finally {
  await cluster.stop();
  await db.drop().catch(() => {});
  await nats.stop();
}
