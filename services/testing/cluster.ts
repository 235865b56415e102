// An in-process orderflow for tests: a private nats-server, a fresh database, an SMTP
// sink, and the real runtime with the real registry.
import { createLogger } from '../kit/index.ts';
import { startRuntime, type Cluster } from '../kit/runtime.ts';
import type { Env } from '../kit/index.ts';
import { createTestDatabase, startTestNats, type TestNats } from './servers.ts';
import { externals, registry, sharedRoutes } from '../main.ts';
import { startSmtpSink, type SmtpSink } from '../simulators/smtp-sink.ts';

export type TestCluster = Cluster & {
  nats: TestNats; sink: SmtpSink; databaseUrl: string; env: Env;
  /** POST JSON to the cluster over its real HTTP port. */
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
  get(path: string): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
};

/** `const c = await startTestCluster({ TARGET: 'orders,notifications,admin' })` */
export async function startTestCluster(env: Env = {}, shared?: { nats?: TestNats; databaseUrl?: string; sink?: SmtpSink }): Promise<TestCluster> {
  const nats = shared?.nats ?? await startTestNats();
  const db = shared?.databaseUrl ? undefined : await createTestDatabase();
  const sink = shared?.sink ?? await startSmtpSink({ port: 0 });
  const fullEnv: Env = {
    NATS_URL: nats.url, DATABASE_URL: shared?.databaseUrl ?? db!.url, PORT: '0', HOST: '127.0.0.1',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent', SMTP_URL: sink.url, DB_POOL_MAX: '10', ...env,
  };
  const cluster = await startRuntime({ env: fullEnv, registry, externals, routes: sharedRoutes, log: createLogger({ level: fullEnv.LOG_LEVEL }) });
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(cluster.url + path, {
      method, headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try { parsed = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, body: parsed as any };
  };
  return {
    ...cluster, nats, sink, databaseUrl: fullEnv.DATABASE_URL!, env: fullEnv,
    post: (path, body, headers) => call('POST', path, body, headers),
    get: (path) => call('GET', path),
    async close() {
      await cluster.stop();
      if (!shared?.sink) await sink.close();
      if (db) await db.drop().catch(() => {});
      if (!shared?.nats) await nats.stop();
    },
  };
}

export type SpawnedCluster = { url: string; port: number; pid: number; kill9(): Promise<void>; sigterm(): Promise<number | null>; output(): string };

/** Run `node services/main.ts` as a child process (for kill -9 and SIGTERM tests); `detached` makes it lead a session of its own. */
export async function spawnCluster(env: Env, opts: { detached?: boolean } = {}): Promise<SpawnedCluster> {
  // freePort() closes its probe before the child binds, and in that gap another
  // test's outbound connection can take the port: try again on a fresh one.
  for (let attempt = 1; ; attempt++) {
    try {
      return await spawnOnce(env, opts.detached ?? false);
    } catch (err) {
      if (env.PORT || attempt >= 3 || !String(err).includes('EADDRINUSE')) throw err;
    }
  }
}

async function spawnOnce(env: Env, detached: boolean): Promise<SpawnedCluster> {
  const { spawn } = await import('node:child_process');
  const { freePort, eventually } = await import('./servers.ts');
  const port = Number(env.PORT) || await freePort();
  const child = spawn(process.execPath, [new URL('../main.ts', import.meta.url).pathname], {
    env: { ...process.env, LOG_LEVEL: 'warn', ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached,
  });
  let out = '';
  child.stdout.on('data', (d) => { out = (out + d).slice(-20_000); });
  child.stderr.on('data', (d) => { out = (out + d).slice(-20_000); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // A child in its own session gets no signal when this process's terminal or group does:
  // take it down with us however we exit.
  if (detached) {
    const reap = () => { child.kill('SIGKILL'); };
    process.once('exit', reap);
    void exited.then(() => process.off('exit', reap));
  }
  const url = `http://127.0.0.1:${port}`;
  // An exit ends the wait at once (a throw would only be retried until the timeout).
  const state = await eventually(async () => {
    if (child.exitCode !== null) return 'exited';
    return (await fetch(`${url}/readyz`)).status === 200 ? 'ready' : undefined;
  }, { timeoutMs: 30_000, what: 'spawned cluster ready' });
  if (state === 'exited') throw new Error(`cluster exited with ${child.exitCode}: ${out}`);
  return {
    url, port, pid: child.pid!, output: () => out,
    async kill9() { child.kill('SIGKILL'); await exited; },
    async sigterm() { child.kill('SIGTERM'); return await exited; },
  };
}
