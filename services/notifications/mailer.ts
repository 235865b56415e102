// Sending mail. The server's reply decides what happens next:
// 4xx is transient (retry with backoff), 5xx is permanent (DLQ with the reply text),
// and a dropped or timed-out connection is transient.
//
// The message itself is composed here (composeMail): our mails are one text/plain part,
// and nodemailer's MIME builder cost ~190 µs of CPU per mail (measured on this machine).
import nodemailer from 'nodemailer';
import { NonRetryableError, SpanKind, tracingOff, type Tracing } from '../kit/index.ts';
import { createSmtpClient, type SmtpClient } from './smtp-client.ts';

export type Mail = { to: string; subject: string; text: string; messageId: string; requestId?: string };
export type Mailer = { send(mail: Mail): Promise<void>; close(): void };

export class SmtpTransientError extends Error {
  override name = 'SmtpTransientError';
}

/** `const mailer = createMailer({ url: 'smtp://127.0.0.1:2525', from: 'shop <a@b>' })` */
export function createMailer({ url, from, poolSize = 5, tracing = tracingOff }: { url: string; from: string; poolSize?: number; tracing?: Tracing }): Mailer {
  const u = new URL(url);
  const plain = u.protocol === 'smtp:' && !u.username && u.searchParams.get('starttls') !== 'true';
  const port = Number(u.port || (u.protocol === 'smtps:' ? 465 : 25));
  // Plain SMTP, the contract's smtp://host:port, goes through our own pooled client
  // (smtp-client.ts); TLS and AUTH through nodemailer, behind the same two methods.
  const transport: SmtpClient = plain ? createSmtpClient({ host: u.hostname, port, poolSize, timeoutMs: 20_000 }) : nodemailerTransport(u, port, poolSize);
  const sender = envelopeAddress(from);
  // A CLIENT span per mail, in the trace of the message that asked for it; no address in it.
  const spanAttributes = { 'server.address': u.hostname, 'server.port': port, 'peer.service': 'smtp', 'network.protocol.name': u.protocol.replace(':', '') };
  return {
    send: (mail) => tracing.span('smtp send', { kind: SpanKind.CLIENT, attributes: { ...spanAttributes, 'orderflow.mail.message_id': mail.messageId } }, async () => {
      try {
        await transport.send({ from: sender, to: mail.to }, composeMail(from, mail));
      } catch (err) {
        const e = err as { responseCode?: number; response?: string; message?: string };
        const code = e.responseCode;
        if (code !== undefined && code >= 500) throw new NonRetryableError(`SMTP ${code}: ${e.response ?? e.message}`, { cause: err, reason: 'smtp-rejected' });
        throw new SmtpTransientError(code ? `SMTP ${code}: ${e.response ?? e.message}` : `SMTP: ${e.message}`, { cause: err });
      }
    }),
    close: () => transport.close(),
  };
}

/** nodemailer for `smtps://`, `?starttls=true` and URLs with credentials. */
function nodemailerTransport(u: URL, port: number, poolSize: number): SmtpClient {
  const t = nodemailer.createTransport({
    pool: true,
    maxConnections: poolSize,
    host: u.hostname,
    port,
    secure: u.protocol === 'smtps:',
    ignoreTLS: u.protocol === 'smtp:' && u.searchParams.get('starttls') !== 'true',
    auth: u.username ? { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } : undefined,
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 20_000,
  });
  return {
    async send(envelope, raw) { await t.sendMail({ envelope: { from: envelope.from, to: [envelope.to] }, raw }); },
    close: () => t.close(),
  };
}

/** Message-ID derived from (order, kind), so a resent mail is recognisably the same mail. */
export const messageIdFor = (orderUuid: string, kind: string) => `<${orderUuid}.${kind}@orderflow>`;

/** The address inside `Name <addr>`, or the whole string when there are no brackets. */
export function envelopeAddress(from: string): string {
  const m = /<([^<>]+)>\s*$/.exec(from);
  return (m ? m[1]! : from).trim();
}

/** An RFC 5322 text/plain message with CRLF line ends (nodemailer dot-stuffs it on the wire). */
export function composeMail(from: string, mail: Mail, date = new Date()): string {
  const m = /^\s*(.*?)\s*<([^<>]+)>\s*$/.exec(from);
  const fromHeader = m && m[1] ? `${displayName(m[1].replace(/^"|"$/g, ''))} <${oneLine(m[2]!)}>` : oneLine(from);
  const ascii = /^[\t\n\x20-\x7e]*$/.test(mail.text) && mail.text.split('\n').every((l) => l.length <= 998);
  const lines = [
    `From: ${fromHeader}`,
    `To: ${oneLine(mail.to)}`,
    `Subject: ${headerText(mail.subject)}`,
    `Date: ${date.toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: ${oneLine(mail.messageId)}`,
    ...(mail.requestId ? [`X-Request-Id: ${oneLine(mail.requestId)}`] : []),
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    `Content-Transfer-Encoding: ${ascii ? '7bit' : 'quoted-printable'}`,
    '',
    ascii ? mail.text.replace(/\r?\n/g, '\r\n') : quotedPrintable(mail.text),
  ];
  return lines.join('\r\n');
}

// A header value never carries a line break of its own (no header injection).
const oneLine = (v: string) => v.replace(/[\r\n]+/g, ' ');

/** A display name: encoded words when not ASCII, quoted when it holds RFC 5322 specials. */
function displayName(name: string): string {
  const text = oneLine(name);
  if (!/^[\x20-\x7e]*$/.test(text)) return headerText(text);
  return /[()<>\[\]:;@\\,."]/.test(text) ? `"${text.replace(/["\\]/g, '\\$&')}"` : text;
}

/** Printable ASCII as is; anything else as RFC 2047 base64 words of at most 39 bytes (lines stay within 76). */
function headerText(v: string): string {
  const text = oneLine(v);
  if (/^[\x20-\x7e]*$/.test(text)) return text;
  const words: string[] = [];
  let chunk = '';
  for (const ch of text) {
    if (Buffer.byteLength(chunk + ch) > 39) { words.push(chunk); chunk = ''; }
    chunk += ch;
  }
  if (chunk) words.push(chunk);
  return words.map((w) => `=?UTF-8?B?${Buffer.from(w).toString('base64')}?=`).join('\r\n ');
}

/** RFC 2045 quoted-printable of UTF-8 text: lines of at most 76 characters, CRLF ends. */
function quotedPrintable(text: string): string {
  const out: string[] = [];
  for (const line of text.replace(/\r\n/g, '\n').split('\n')) {
    const bytes = Buffer.from(line);
    let cur = '';
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      const last = i === bytes.length - 1;
      // '=', non-ASCII, controls, and a space or tab ending the line are encoded.
      const plain = b !== 0x3d && ((b >= 0x20 && b <= 0x7e) || b === 0x09) && !(last && (b === 0x20 || b === 0x09));
      const tok = plain ? String.fromCharCode(b) : `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
      if (cur.length + tok.length > 75) { out.push(`${cur}=`); cur = ''; }
      cur += tok;
    }
    out.push(cur);
  }
  return out.join('\r\n');
}
