import { z } from 'zod';
import { ConfigError, int, readConfig, url } from '../kit/index.ts';
import type { Env } from '../kit/index.ts';

const schema = z.object({
  SMTP_URL: url(['smtp', 'smtps']),
  MAIL_FROM: z.string().default('orderflow <orders@orderflow.local>'),
  // Mails in flight per consumer: one batch, sharing one transaction (consumers.ts). It also
  // bounds what a kill -9 can send twice: only mails whose 250 was still in flight.
  NOTIFY_CONCURRENCY: int(8, 1, 1000),
  SMTP_POOL_SIZE: int(8, 1, 100),
  /** Unset (and no simulator): no SMS is sent. */
  SMS_URL: url(['http', 'https']),
});

export type NotificationsConfig = z.infer<typeof schema> & { SMTP_URL: string };

/** SMTP_URL and SMS_URL may come from the simulators main.ts started; SMTP_URL is required by then. */
export function loadNotificationsConfig(env: Env, fallback: { smtp?: string; sms?: string } = {}): NotificationsConfig {
  const c = readConfig(schema, { ...env, SMTP_URL: env.SMTP_URL || fallback.smtp, SMS_URL: env.SMS_URL || fallback.sms });
  if (!c.SMTP_URL) throw new ConfigError('invalid configuration:\n  SMTP_URL: required for the notifications service (unset, npm start runs the in-repo SMTP sink outside production)');
  return c as NotificationsConfig;
}
