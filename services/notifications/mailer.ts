// SMTP through nodemailer. The server's reply decides what happens next:
// 4xx is transient (retry with backoff), 5xx is permanent (DLQ with the reply text),
// and a dropped or timed-out connection is transient.
import nodemailer from 'nodemailer';
import { NonRetryableError } from '../kit/errors.ts';

export type Mail = { to: string; subject: string; text: string; messageId: string; requestId?: string };
export type Mailer = { send(mail: Mail): Promise<void>; close(): void };

export class SmtpTransientError extends Error {
  override name = 'SmtpTransientError';
}

/** `const mailer = createMailer({ url: 'smtp://127.0.0.1:2525', from: 'shop <a@b>' })` */
export function createMailer({ url, from, poolSize = 5 }: { url: string; from: string; poolSize?: number }): Mailer {
  const u = new URL(url);
  const transport = nodemailer.createTransport({
    pool: true,
    maxConnections: poolSize,
    host: u.hostname,
    port: Number(u.port || (u.protocol === 'smtps:' ? 465 : 25)),
    secure: u.protocol === 'smtps:',
    ignoreTLS: u.protocol === 'smtp:' && u.searchParams.get('starttls') !== 'true',
    auth: u.username ? { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } : undefined,
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 20_000,
  });
  return {
    async send(mail) {
      try {
        await transport.sendMail({
          from, to: mail.to, subject: mail.subject, text: mail.text, messageId: mail.messageId,
          headers: mail.requestId ? { 'X-Request-Id': mail.requestId } : undefined,
        });
      } catch (err) {
        const e = err as { responseCode?: number; response?: string; message?: string };
        const code = e.responseCode;
        if (code !== undefined && code >= 500) throw new NonRetryableError(`SMTP ${code}: ${e.response ?? e.message}`, { cause: err, reason: 'smtp-rejected' });
        throw new SmtpTransientError(code ? `SMTP ${code}: ${e.response ?? e.message}` : `SMTP: ${e.message}`, { cause: err });
      }
    },
    close: () => transport.close(),
  };
}

/** Message-ID derived from (order, kind), so a resent mail is recognisably the same mail. */
export const messageIdFor = (orderUuid: string, kind: string) => `<${orderUuid}.${kind}@orderflow>`;
