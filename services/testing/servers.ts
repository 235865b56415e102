// Test helpers: real servers, isolated per test file.
//
// JetStream stream names are global to a server, and vitest runs two files at a
// time, so every test file gets its own nats-server process (the same 2.9.10
// binary as the shared one) and its own Postgres database on the shared server.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/** A free TCP port on loopback. `const port = await freePort()` */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export type TestNats = {
  url: string;
  port: number;
  /** SIGKILL the server (data dir kept), as in an outage. */
  kill(): Promise<void>;
  /** Start it again on the same port and data dir. */
  restart(): Promise<void>;
  stop(): Promise<void>;
};

async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const { connect } = await import('node:net');
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listening on ${port} after ${timeoutMs} ms`);
}

/** A private nats-server with JetStream. `const nats = await startTestNats(); ... await nats.stop()` */
export async function startTestNats(): Promise<TestNats> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'orderflow-nats-'));
  let proc: ChildProcess | undefined;
  const start = async () => {
    proc = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], { stdio: 'ignore' });
    await waitForPort(port);
  };
  const kill = async () => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => { p.once('exit', () => resolve()); p.kill('SIGKILL'); });
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    kill,
    restart: start,
    async stop() { await kill(); rmSync(dir, { recursive: true, force: true }); },
  };
}

const adminUrl = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A fresh database on the shared Postgres; dropped by `drop()`. */
export async function createTestDatabase(prefix = 'orderflow_test'): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = `${prefix}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  await client.query(`CREATE DATABASE "${name}"`);
  await client.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await c.end();
    },
  };
}

/** Poll `fn` until it returns a truthy value. `await eventually(() => count() === 3)` */
export async function eventually<T>(fn: () => T | Promise<T>, { timeoutMs = 30_000, intervalMs = 100, what = 'condition' } = {}): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export type TestPostgres = {
  url: string; port: number;
  /** Immediate shutdown (SIGQUIT to the postmaster, what `pg_ctl stop -m immediate` sends): a crash, with no checkpoint. */
  kill(): Promise<void>;
  /** SIGKILL to the postmaster and every backend, as the OOM killer would: nobody gets to clean up. */
  kill9(): Promise<void>;
  restart(): Promise<void>; stop(): Promise<void>;
};

const PG_BIN = '/usr/lib/postgresql/15/bin';

/** Postgres refuses to run as root: as root, run its programs as the `postgres` user, in a directory it owns. */
async function postgresUser() {
  const { execFileSync } = await import('node:child_process');
  const { chownSync } = await import('node:fs');
  const root = process.getuid?.() === 0;
  const ids = root ? [Number(execFileSync('id', ['-u', 'postgres']).toString()), Number(execFileSync('id', ['-g', 'postgres']).toString())] as const : [process.getuid!(), process.getgid!()] as const;
  const command = (cmd: string, args: string[]) => (root ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]) as [string, string[]];
  return {
    command,
    run: (cmd: string, args: string[]) => { execFileSync(...command(cmd, args), { stdio: 'ignore' }); },
    /** A fresh temp directory the server may write. */
    dir: () => { const d = mkdtempSync(join(tmpdir(), 'orderflow-pg-')); chownSync(d, ...ids); return d; },
  };
}

/** A postgres process over `${dir}/data` on `port`, startable again after a kill. */
async function postgresProcess(dir: string, port: number, settings: Record<string, string>): Promise<TestPostgres> {
  const user = await postgresUser();
  let proc: ChildProcess | undefined;
  const start = async () => {
    const extra = Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
    const [cmd, args] = user.command(`${PG_BIN}/postgres`, ['-D', `${dir}/data`, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', ...extra]);
    proc = spawn(cmd, args, { stdio: 'ignore' });
    await eventually(async () => {
      const c = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` });
      try { await c.connect(); return true; } finally { await c.end().catch(() => {}); }
    }, { timeoutMs: 20_000, what: 'private postgres' });
  };
  const kill = async () => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    // SIGQUIT is Postgres's immediate shutdown: backends die at once, clients see dropped
    // connections, as in a crash (SIGKILL would leave backends holding shared memory).
    const { readFileSync } = await import('node:fs');
    const postmaster = Number(readFileSync(`${dir}/data/postmaster.pid`, 'utf8').split('\n')[0]);
    await new Promise<void>((resolve) => { p.once('exit', () => resolve()); process.kill(postmaster, 'SIGQUIT'); });
  };
  const kill9 = async () => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const { readFileSync, readdirSync } = await import('node:fs');
    const postmaster = Number(readFileSync(`${dir}/data/postmaster.pid`, 'utf8').split('\n')[0]);
    // The postmaster's children, by id (from /proc), before it dies and they are re-parented.
    const children = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((pid) => {
      try { return Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]) === postmaster; } catch { return false; }
    });
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    process.kill(postmaster, 'SIGKILL');
    for (const pid of children) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone already */ } }
    await exited;
    // A restart finds the old shared memory free only once every backend is gone.
    await eventually(() => children.every((pid) => { try { process.kill(pid, 0); return false; } catch { return true; } }), { timeoutMs: 10_000, what: 'postgres backends gone' });
  };
  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/orderflow`, port, kill, kill9, restart: start,
    async stop() { await kill(); rmSync(dir, { recursive: true, force: true }); },
  };
}

/**
 * A private PostgreSQL 15 server (for tests that stop the database), as the `postgres` user
 * when run as root; ready to be a replication primary (wal_level replica, trust for
 * replication from loopback, as initdb writes it). `const pg = await startTestPostgres()`
 */
export async function startTestPostgres(): Promise<TestPostgres> {
  const user = await postgresUser();
  const port = await freePort();
  const dir = user.dir();
  user.run(`${PG_BIN}/initdb`, ['-D', `${dir}/data`, '-U', 'postgres', '--auth=trust', '-E', 'UTF8']);
  return await postgresProcess(dir, port, { wal_level: 'replica', max_wal_senders: '4' });
}

/**
 * A hot standby streaming from `primary` (pg_basebackup -R: standby.signal and
 * primary_conninfo), on a port of its own; its url names the same `orderflow` database.
 * `const standby = await startTestStandby(primary)`
 */
export async function startTestStandby(primary: TestPostgres): Promise<TestPostgres> {
  const user = await postgresUser();
  const port = await freePort();
  const dir = user.dir();
  user.run(`${PG_BIN}/pg_basebackup`, ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', `${dir}/data`, '-R', '-X', 'stream', '-c', 'fast']);
  return await postgresProcess(dir, port, { hot_standby: 'on' });
}
