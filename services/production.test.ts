// Production mode (CONTRACTS.md "Running the cluster"): no simulator, no /_dev route, and a
// start that lacks an external URL or a secret fails naming every one of them at once.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from './kit/index.ts';
import { startRuntime } from './kit/runtime.ts';
import { createLogger } from './kit/index.ts';
import { externals, registry, verifier } from './main.ts';
import { loadLendingConfig } from './lending/config.ts';
import { loadNotificationsConfig } from './notifications/config.ts';
import { DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD } from './identity/users.ts';
import { startGatewaySimulator } from './simulators/gateway.ts';
import { startSmsSimulator } from './simulators/sms.ts';
import { startT24Simulator } from './simulators/t24.ts';
import { createTestDatabase, spawnCluster, startTestCluster, startTestNats, type TestCluster, type TestNats } from './testing/index.ts';

const key = () => randomBytes(32).toString('base64');
const URLS = ['SMTP_URL', 'T24_URL', 'PAYMENT_GATEWAY_URL', 'SMS_URL'];
const SECRETS = ['KEY_ENCRYPTION_KEY', 'PAYMENT_TOKEN_KEY', 'ADMIN_EMAIL', 'ADMIN_PASSWORD'];
// Nothing listens here: a start that got as far as connecting would hang, not fail.
const NOWHERE = { NATS_URL: 'nats://127.0.0.1:1', DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' };
const unset = Object.fromEntries([...URLS, ...SECRETS].map((k) => [k, '']));

describe('ORDERFLOW_ENV=production with things missing', () => {
  it('node services/main.ts exits 2 naming every missing URL and secret in one message, before connecting to anything', async () => {
    const err = await spawnCluster({ ...unset, ...NOWHERE, ORDERFLOW_ENV: 'production', TARGET: 'all' }).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(/^cluster exited with 2:/);
    for (const name of [...URLS, ...SECRETS]) expect(err!.message, name).toContain(`${name}: required when ORDERFLOW_ENV=production`);
  });

  it('asks only for what the chosen targets use, and never echoes a value', async () => {
    const log = createLogger({ level: 'silent' });
    const start = (env: Record<string, string>) => startRuntime({ env: { ...unset, ...NOWHERE, ORDERFLOW_ENV: 'production', PORT: '0', HOST: '127.0.0.1', ...env }, registry, externals, log });
    const lending = await start({ TARGET: 'lending' }).catch((e: unknown) => e);
    expect(lending).toBeInstanceOf(ConfigError);
    expect((lending as Error).message.match(/^ {2}(\w+):/gm)).toEqual(['  T24_URL:']);
    const secret = key();
    const some = await start({ TARGET: 'orders,payments,identity', PAYMENT_TOKEN_KEY: secret, ADMIN_EMAIL: 'ops@example.com' }).catch((e: unknown) => e) as Error;
    expect(some.message.match(/^ {2}(\w+):/gm)?.sort()).toEqual(['  ADMIN_PASSWORD:', '  KEY_ENCRYPTION_KEY:', '  PAYMENT_GATEWAY_URL:']);
    expect(some.message).not.toContain(secret);
    expect(some.message).not.toContain('ops@example.com');
  });

  it('refuses an ORDERFLOW_ENV it does not know rather than run as development', async () => {
    const err = await startRuntime({ env: { ...NOWHERE, ORDERFLOW_ENV: 'prod', TARGET: 'catalog' }, registry, externals, log: createLogger({ level: 'silent' }) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain('ORDERFLOW_ENV');
  });
});

describe('a service started without the URL it needs', () => {
  it('is a ConfigError (exit 2, the message alone on stderr), not a crash with a stack trace', () => {
    for (const load of [() => loadNotificationsConfig({}), () => loadLendingConfig({})]) {
      expect(load).toThrow(ConfigError);
    }
    expect(() => loadNotificationsConfig({})).toThrow(/SMTP_URL/);
    expect(() => loadLendingConfig({})).toThrow(/T24_URL/);
  });
});

describe('ORDERFLOW_ENV=production with everything set', () => {
  let nats: TestNats;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let c: TestCluster;
  const sims: { url: string; close(): Promise<void> }[] = [];
  const kek = key();
  const admin = { email: 'ops@example.com', password: 'a-long-production-password' };
  const login = async (email: string, password: string) => (await c.post('/api/auth/login', { email, password })).status;

  beforeAll(async () => {
    nats = await startTestNats();
    db = await createTestDatabase();
    // The database served development first: the development admin exists with its documented password.
    const dev = await startTestCluster({ TARGET: 'identity', KEY_ENCRYPTION_KEY: kek }, { nats, databaseUrl: db.url });
    expect((await dev.post('/api/auth/login', { email: DEV_ADMIN_EMAIL, password: DEV_ADMIN_PASSWORD })).status).toBe(200);
    await dev.close();
    const [t24, gateway, sms] = await Promise.all([startT24Simulator({ port: 0 }), startGatewaySimulator({ port: 0 }), startSmsSimulator({ port: 0 })]);
    sims.push(t24, gateway, sms);
    c = await startTestCluster({
      ORDERFLOW_ENV: 'production', TARGET: 'all', T24_URL: t24.url, PAYMENT_GATEWAY_URL: gateway.url, SMS_URL: sms.url,
      KEY_ENCRYPTION_KEY: kek, PAYMENT_TOKEN_KEY: key(), ADMIN_EMAIL: admin.email, ADMIN_PASSWORD: admin.password,
    }, { nats, databaseUrl: db.url });
  });
  afterAll(async () => {
    await c?.close();
    for (const s of sims) await s.close();
    await db?.drop();
    await nats?.stop();
  });

  it('starts no simulator and mounts no /_dev route', async () => {
    expect(c.deps.endpoints).toEqual({});
    for (const path of ['/_dev/mail', '/_dev/mail/', '/_dev/t24/_sim/stats', '/_dev/gateway/_sim/references/x', '/_dev/sms/v1/messages']) {
      expect((await c.get(path)).status, path).toBe(404);
    }
    expect((await c.get('/readyz')).status).toBe(200);
  });

  it('still serves the API description (every process does, whatever its targets)', async () => {
    expect((await c.get('/asyncapi.json')).body.asyncapi).toBe('3.0.0');
    const docs = await fetch(`${c.url}/docs`);
    expect([docs.status, docs.headers.get('content-type')]).toEqual([200, 'text/html; charset=utf-8']);
  });

  it('never calls the stand-ins at all (main.ts mounts the /_dev pages there)', async () => {
    let called = 0;
    const spy: typeof externals = async () => { called++; return { endpoints: {}, stop: async () => {} }; };
    const other = await startRuntime({ env: { ...c.env, PORT: '0', TARGET: 'catalog' }, registry, verifier, externals: spy, log: createLogger({ level: 'silent' }) });
    await other.stop();
    expect(called).toBe(0);
  });

  it('the development admin is gone: its documented password no longer signs in; ADMIN_EMAIL does', async () => {
    expect(await login(DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD)).toBe(401);
    expect(await login(admin.email, admin.password)).toBe(200);
  });
});
