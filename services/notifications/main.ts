// Notifications: mails the customer about their order, once per (order, kind).
import type { Deps, Running } from '../kit/service.ts';
import { loadNotificationsConfig } from './config.ts';
import { startConsumers } from './consumers.ts';
import { createMailer } from './mailer.ts';

export { entities, migrations } from './entities.ts';

export async function start(deps: Deps): Promise<Running> {
  const config = loadNotificationsConfig(deps.env, deps.endpoints.smtp);
  const mailer = createMailer({ url: config.SMTP_URL, from: config.MAIL_FROM, poolSize: config.SMTP_POOL_SIZE });
  const workers = await startConsumers(deps, mailer, config.NOTIFY_CONCURRENCY);
  return {
    async stop() {
      await Promise.all(workers.map((w) => w.stop()));
      mailer.close();
    },
  };
}
