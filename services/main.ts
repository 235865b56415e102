// The target registry. `npm start` runs every service in one process (TARGET=all);
// TARGET=orders,notifications runs some; Kubernetes runs one Deployment per target
// from the same image. SIGTERM stops the services in reverse order and exits 0.
import * as admin from './admin/main.ts';
import { ConfigError } from './kit/errors.ts';
import { createLogger } from './kit/log.ts';
import { startRuntime, type Externals, type Registry } from './kit/runtime.ts';
import * as notifications from './notifications/main.ts';
import * as orders from './orders/main.ts';
import { startSmtpSink } from './simulators/smtp-sink.ts';

export const registry: Registry = { orders, notifications, admin };

/** In-repo stand-ins for every external system whose URL is unset. */
export const externals: Externals = async ({ env, targets, app, log }) => {
  const endpoints: Record<string, string> = {};
  const stops: (() => Promise<void>)[] = [];
  if (!env.SMTP_URL && targets.includes('notifications')) {
    const sink = await startSmtpSink({ port: Number(env.SMTP_SINK_PORT ?? 0) });
    endpoints.smtp = sink.url;
    app.route('/_dev/mail', sink.app);
    stops.push(async () => await sink.close());
    log.info({ smtp: sink.url, page: '/_dev/mail' }, 'SMTP_URL unset: started the in-repo SMTP sink; received mail is listed at /_dev/mail');
  }
  return { endpoints, stop: async () => { for (const s of stops.reverse()) await s(); } };
};

if (import.meta.main) {
  const log = createLogger({ level: process.env.LOG_LEVEL ?? 'info' });
  try {
    const cluster = await startRuntime({ env: process.env, registry, externals, log });
    let signalled = false;
    const shutdown = (signal: string) => {
      if (signalled) return;
      signalled = true;
      log.info({ signal }, 'shutting down');
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
    await new Promise((r) => setTimeout(r, 100));
    process.exit(1);
  }
}
