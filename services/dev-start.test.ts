// `./dev start` must hand SIGTERM to node: a container's or a terminal's stop reaches
// the ./dev pid, and the services have to shut down with it rather than linger.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, eventually, freePort, startTestNats, type TestNats } from './testing/index.ts';

const root = new URL('..', import.meta.url).pathname;
const listening = async (port: number) => await new Promise<boolean>((resolve) => {
  const s = connect(port, '127.0.0.1');
  s.once('connect', () => { s.destroy(); resolve(true); });
  s.once('error', () => resolve(false));
});
// ./dev sets up what is missing (Node, nats-server, Postgres, `npm ci`); run it only where it has nothing to install.
const lock = join(root, 'node_modules', '.package-lock.json');
const packagesCurrent = existsSync(lock) && statSync(join(root, 'package-lock.json')).mtimeMs <= statSync(lock).mtimeMs;
const servicesUp = (await listening(4222)) && (await listening(5432));

/** Processes whose process group is `pgid`. */
const groupMembers = (pgid: number) => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
  try {
    const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]) === pgid;
  } catch { return false; }
}).map((p) => `${p}: ${readFileSync(`/proc/${p}/cmdline`, 'utf8').replaceAll('\0', ' ')}`);

let nats: TestNats;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
beforeAll(async () => { nats = await startTestNats(); db = await createTestDatabase(); });
afterAll(async () => { await db?.drop().catch(() => {}); await nats?.stop(); });

it.skipIf(!packagesCurrent || !servicesUp || process.platform !== 'linux')('SIGTERM to `./dev start` stops node and exits 0, leaving no process behind', async () => {
  const port = await freePort();
  // Its own process group, so whatever ./dev started can be found (and reaped) by group.
  const child = spawn(join(root, 'dev'), ['start'], {
    cwd: root, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH}`,
      NATS_URL: nats.url, DATABASE_URL: db.url, PORT: String(port), HOST: '127.0.0.1', TARGET: 'admin', LOG_LEVEL: 'warn',
    },
  });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const state = await eventually(async () => {
      if (child.exitCode !== null) return 'exited';
      return (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200 ? 'ready' : undefined;
    }, { timeoutMs: 60_000, what: './dev start ready' });
    expect(state, out).toBe('ready');

    process.kill(child.pid!, 'SIGTERM');
    expect(await exited, out).toBe(0);
    expect(groupMembers(child.pid!)).toEqual([]);
  } finally {
    try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* the group is gone */ }
  }
});
