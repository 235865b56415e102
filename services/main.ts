// The target registry. `npm start` runs every service in one process (TARGET=all);
// TARGET=orders,notifications runs some; Kubernetes runs one Deployment per target
// from the same image. SIGTERM stops the services in reverse order and exits 0.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import * as admin from './admin/main.ts';
import * as catalog from './catalog/main.ts';
import { docsRoutes } from './docs/routes.ts';
import * as inventory from './inventory/main.ts';
import { ConfigError } from './kit/index.ts';
import * as funding from './funding/main.ts';
import * as gateway from './gateway/main.ts';
import * as identity from './identity/main.ts';
import { SCOPES } from './identity/clients.ts';
import * as fundingScoring from './funding/scoring-main.ts';
import { createLogger } from './kit/index.ts';
import type { Routes } from './kit/http.ts';
import { startRuntime, type Externals, type Registry, type VerifierFactory } from './kit/runtime.ts';
import * as lending from './lending/main.ts';
import * as notifications from './notifications/main.ts';
import * as orders from './orders/main.ts';
import * as payments from './payments/main.ts';
import * as saga from './saga/main.ts';
import * as shipping from './shipping/main.ts';
import { startGatewaySimulator } from './simulators/gateway.ts';
import { startSmsSimulator } from './simulators/sms.ts';
import { startSmtpSink } from './simulators/smtp-sink.ts';
import { startT24Simulator } from './simulators/t24.ts';

// Each module declares what it needs (kit/modules.ts); the order here is the start order.
export const registry: Registry = Object.fromEntries(
  [identity, orders, notifications, admin, lending, catalog, inventory, payments, shipping, saga, funding, fundingScoring, gateway].map(({ module }) => [module.name, module]),
);

/** What every process serves whatever its TARGET: the API description (/asyncapi.json, /docs), declared in its route table. */
export const sharedRoutes = (routes: Routes) => {
  const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  docsRoutes(routes, { version });
};

/** Access tokens are verified locally in every process (identity/main.ts, processVerifier). */
export const verifier: VerifierFactory = ({ orm, env }) => identity.processVerifier(orm, env);

/** What GET /openapi.json says of itself: the version, and every scope a client may hold. */
export const openapi = { title: 'orderflow', version: '0.1.0', scopes: SCOPES };

/** In-repo stand-ins for the external systems the chosen targets need (`needed`) whose URL is unset. */
export const externals: Externals = async ({ env, needed, app, log }) => {
  const endpoints: Record<string, string> = {};
  const stops: (() => Promise<void>)[] = [];
  if (!env.SMTP_URL && needed.includes('smtp')) {
    const sink = await startSmtpSink({ port: Number(env.SMTP_SINK_PORT ?? 0) });
    endpoints.smtp = sink.url;
    app.route('/_dev/mail', sink.app);
    stops.push(async () => await sink.close());
    log.info({ smtp: sink.url, page: '/_dev/mail' }, 'SMTP_URL unset: started the in-repo SMTP sink; received mail is listed at /_dev/mail');
  }
  if (!env.T24_URL && needed.includes('t24')) {
    const maxRps = Number(env.T24_MAX_RPS) || 50;
    const t24 = await startT24Simulator({ port: Number(env.T24_SIM_PORT ?? 0), maxRps });
    endpoints.t24 = t24.url;
    app.route('/_dev/t24', t24.sim.app);
    stops.push(async () => await t24.close());
    log.info({ t24: t24.url, maxRps, stats: '/_dev/t24/_sim/stats' }, 'T24_URL unset: started the in-repo T24 simulator capped at T24_MAX_RPS; its counters are at /_dev/t24/_sim/stats');
  }
  if (!env.PAYMENT_GATEWAY_URL && needed.includes('gateway')) {
    const gw = await startGatewaySimulator({ port: Number(env.GATEWAY_SIM_PORT ?? 0) });
    endpoints.gateway = gw.url;
    app.route('/_dev/gateway', gw.sim.app);
    stops.push(async () => await gw.close());
    log.info({ gateway: gw.url, ledger: '/_dev/gateway/_sim/references/{orderId}' }, 'PAYMENT_GATEWAY_URL unset: started the in-repo payment gateway simulator');
  }
  if (!env.SMS_URL && needed.includes('sms')) {
    const sms = await startSmsSimulator({ port: Number(env.SMS_SIM_PORT ?? 0) });
    endpoints.sms = sms.url;
    app.route('/_dev/sms', sms.sim.app);
    stops.push(async () => await sms.close());
    log.info({ sms: sms.url, page: '/_dev/sms/v1/messages' }, 'SMS_URL unset: started the in-repo SMS simulator; sent texts are listed at /_dev/sms/v1/messages');
  }
  return { endpoints, stop: async () => { for (const s of stops.reverse()) await s(); } };
};

if (import.meta.main) {
  const log = createLogger({ level: process.env.LOG_LEVEL ?? 'info' });
  try {
    const cluster = await startRuntime({ env: process.env, registry, externals, verifier, openapi, log, routes: sharedRoutes });
    let signalled = false;
    const shutdown = (signal: string) => {
      if (signalled) return;
      signalled = true;
      log.info({ signal }, 'shutting down');
      // Every step of stop() is bounded; this is the backstop if something still hangs.
      setTimeout(() => { log.error('shutdown did not finish in time; exiting'); process.exit(1); }, cluster.deps.config.SHUTDOWN_TIMEOUT_MS + 15_000).unref();
      cluster.stop().then(() => process.exit(0), (err) => { log.error({ err }, 'shutdown failed'); process.exit(1); });
    };
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    process.on('SIGINT', () => shutdown('SIGINT'));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    log.fatal({ err }, 'start-up failed');
    await sleep(100);
    process.exit(1);
  }
}
