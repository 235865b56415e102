// Notifications: mails (and texts, when the order has a phone) the customer about
// their order, once per (order, kind, channel).
import { timedSend } from '../kit/index.ts';
import { defineModule } from '../kit/index.ts';
import type { Deps, Running } from '../kit/index.ts';
import { loadNotificationsConfig } from './config.ts';
import { startReceivedNotices, startSagaNotices } from './consumers.ts';
import { createMailer } from './mailer.ts';
import { createSmsClient } from './sms.ts';
import { entities, migrations } from './entities.ts';

export { entities, migrations };

export async function start(deps: Deps): Promise<Running> {
  const config = loadNotificationsConfig(deps.env, { smtp: deps.endpoints.smtp, sms: deps.endpoints.sms });
  const mailer = timedSend(createMailer({ url: config.SMTP_URL, from: config.MAIL_FROM, poolSize: config.SMTP_POOL_SIZE, tracing: deps.tracing }), deps.metrics.mailSeconds);
  if (!config.SMS_URL) deps.log.warn('SMS_URL unset and no SMS simulator: no SMS will be sent');
  const ch = { mailer, sms: config.SMS_URL ? createSmsClient({ url: config.SMS_URL, tracing: deps.tracing }) : null };
  // One consumer per stream carries both channels: a text never waits for another delivery.
  const workers = [await startReceivedNotices(deps, ch, config.NOTIFY_CONCURRENCY), await startSagaNotices(deps, ch, config.NOTIFY_CONCURRENCY)];
  return {
    async stop() {
      await Promise.all(workers.map((w) => w.stop()));
      mailer.close();
    },
  };
}

/** The `notifications` target. Claims commit with inbox rows; it emits no events. */
export const module = defineModule({
  name: 'notifications', schema: 'notifications', entities, migrations, start,
  needs: { schemas: [], outboxRelay: false, dlqMover: false, externals: ['smtp', 'sms'] },
});
