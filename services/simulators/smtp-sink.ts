// An SMTP server that keeps what it receives in memory and can be told to fail,
// so the notification path (4xx retried, 5xx dead-lettered, never sent twice)
// can be exercised in dev and in tests without a real mail relay.
import { randomUUID, createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { simpleParser, type AddressObject, type EmailAddress, type HeaderValue } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import type { SMTPServerDataStream, SMTPServerSession, SMTPServerAddress } from 'smtp-server';
import { Hono } from 'hono';
import { z } from 'zod';
import { serveApp, createRandom, randomSeed } from './serve.ts';
import type { ServedApp } from './serve.ts';

export type Received = {
  id: string;
  /** As in the header, angle brackets included, e.g. `<abc@host>`; '' when absent. */
  messageId: string;
  /** The From header, encoded words decoded. */
  from: string;
  /** Envelope recipients (RCPT TO) that were accepted, as the client gave them. */
  to: string[];
  subject: string;
  /** The text/plain body (first text/plain part of a multipart), decoded. */
  text: string;
  /** Top-level headers, names lower-cased, first occurrence wins. */
  headers: Record<string, string>;
  size: number;
  receivedAt: string;
};

export type SmtpFaults = {
  /** Answer the first n DATA attempts of each distinct Message-ID with 451. */
  tempFailFirst: number;
  /** Fraction (0..1) of first attempts per Message-ID answered with 451. */
  tempFailRate: number;
  /** Recipients refused with 550 at RCPT: exact addresses (case-insensitive) or `/regex/flags` strings. */
  permFailTo: string[];
  /** Refuse every recipient with 550. */
  permFailAll: boolean;
  /**
   * Recipients (as permFailTo) whose message gets no answer after its DATA, as if the
   * server hung, until a setFaults() that no longer names them: then it is handled as
   * usual (stored and answered 250, or 451 per the faults above).
   */
  stallTo: string[];
};

export type SmtpSinkStats = {
  /** Messages accepted since start or clear(). */
  accepted: number;
  /** Messages held now (accepted minus evicted). */
  stored: number;
  /** DATA transactions seen, accepted or not. */
  dataAttempts: number;
  /** DATA attempts answered 451. */
  tempFailed: number;
  /** Recipients refused with 550. */
  permFailed: number;
  /** Accepted messages whose Message-ID had already been accepted. */
  duplicates: number;
};

export type SmtpSinkOptions = {
  /** SMTP port; 0 picks a free one. Default 0. */
  port?: number;
  host?: string;
  /** When set, also serve the HTTP view standalone on this port (0 = free port). */
  httpPort?: number;
  /** Oldest messages are dropped beyond this. Default 100,000. */
  maxMessages?: number;
  /** Largest message accepted, in bytes. Default 25 MiB. */
  maxSize?: number;
  /** Seed of the PRNG behind tempFailRate. */
  seed?: number;
  faults?: Partial<SmtpFaults>;
};

export type SmtpSink = {
  url: string;
  port: number;
  /** Set when `httpPort` was given. */
  httpUrl?: string;
  /** Oldest first. */
  messages(): Received[];
  /** The first accepted message with this Message-ID; brackets optional. */
  byMessageId(id: string): Received | undefined;
  /** Forget messages, attempt counts and stats; faults stay. */
  clear(): void;
  setFaults(partial: Partial<SmtpFaults> & { seed?: number }): SmtpFaults;
  faults(): SmtpFaults;
  stats(): SmtpSinkStats;
  app: Hono;
  close(): Promise<void>;
};

const TEMP_FAIL = '4.3.0 Temporary failure';
const PERM_FAIL = '5.1.1 Mailbox unavailable';

const faultsSchema = z.object({
  tempFailFirst: z.number().int().min(0).optional(),
  tempFailRate: z.number().min(0).max(1).optional(),
  permFailTo: z.array(z.string()).optional(),
  permFailAll: z.boolean().optional(),
  stallTo: z.array(z.string()).optional(),
  seed: z.number().int().optional(),
}).strict();

/** Start an in-memory SMTP sink. `const sink = await startSmtpSink({ faults: { tempFailFirst: 1 } })` */
export async function startSmtpSink(options: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const host = options.host ?? '127.0.0.1';
  const maxMessages = options.maxMessages ?? 100_000;
  const maxSize = options.maxSize ?? 25 * 1024 * 1024;
  let random = createRandom(options.seed ?? randomSeed());
  let faults: SmtpFaults = { tempFailFirst: 0, tempFailRate: 0, permFailTo: [], permFailAll: false, stallTo: [] };
  let permMatchers: Array<(address: string) => boolean> = [];
  let stallMatchers: Array<(address: string) => boolean> = [];
  // Messages held by stallTo, answered when the fault no longer names their recipients.
  let stalled: { to: string[]; finish: () => void }[] = [];
  const stalls = (to: string[]) => to.some((a) => stallMatchers.some((m) => m(a)));

  // Map keeps insertion order, so the first key is the oldest: eviction is O(1).
  const store = new Map<string, Received>();
  const byMsgId = new Map<string, Received>();
  const attempts = new Map<string, number>();
  let stats = emptyStats();

  function setFaults(partial: Partial<SmtpFaults> & { seed?: number }): SmtpFaults {
    const { seed, ...rest } = partial;
    const next = { ...faults, ...rest };
    const matchers = next.permFailTo.map(toMatcher);
    const stallNext = next.stallTo.map(toMatcher);
    faults = next;
    permMatchers = matchers;
    stallMatchers = stallNext;
    if (seed !== undefined) random = createRandom(seed);
    const release = stalled.filter((h) => !stalls(h.to));
    stalled = stalled.filter((h) => stalls(h.to));
    for (const h of release) h.finish();
    return copyFaults(faults);
  }
  if (options.faults) setFaults(options.faults);

  function remember(msg: Received): void {
    const key = normalizeMessageId(msg.messageId);
    if (key) {
      if (byMsgId.has(key)) stats.duplicates++;
      else byMsgId.set(key, msg);
    }
    store.set(msg.id, msg);
    stats.accepted++;
    while (store.size > maxMessages) {
      const oldest = store.values().next().value as Received;
      store.delete(oldest.id);
      const k = normalizeMessageId(oldest.messageId);
      if (k && byMsgId.get(k) === oldest) byMsgId.delete(k);
    }
  }

  function countAttempt(key: string): number {
    const n = (attempts.get(key) ?? 0) + 1;
    attempts.delete(key);
    attempts.set(key, n);
    if (attempts.size > maxMessages) attempts.delete(attempts.keys().next().value as string);
    return n;
  }

  function onRcptTo(address: SMTPServerAddress, _session: SMTPServerSession, callback: (err?: Error | null) => void): void {
    if (faults.permFailAll || permMatchers.some((m) => m(address.address))) {
      stats.permFailed++;
      callback(smtpError(550, PERM_FAIL));
      return;
    }
    callback();
  }

  function onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback: (err?: Error | null, message?: string) => void): void {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      // Past the limit the server answers 552 itself; just stop buffering.
      if (size <= maxSize) chunks.push(chunk);
    });
    stream.on('end', () => {
      stats.dataAttempts++;
      if (stream.sizeExceeded) { callback(smtpError(552, 'Message too large')); return; }
      const to = session.envelope.rcptTo.map((r) => r.address);
      const mailFrom = session.envelope.mailFrom;
      if (stalls(to)) stalled.push({ to, finish: () => void finish(Buffer.concat(chunks), mailFrom, to) });
      else void finish(Buffer.concat(chunks), mailFrom, to);
    });
    const finish = async (raw: Buffer, mailFrom: SMTPServerAddress | false, to: string[]) => {
      let parsed: Awaited<ReturnType<typeof parseMail>>;
      try {
        parsed = await parseMail(raw);
      } catch (err) {
        callback(smtpError(554, `Message could not be parsed: ${(err as Error).message}`));
        return;
      }
      const messageId = parsed.headers['message-id'] ?? '';
      // Without a Message-ID the content stands in for it, so a resend still counts as a retry.
      const key = normalizeMessageId(messageId) || `sha256:${createHash('sha256').update(raw).digest('hex')}`;
      const attempt = countAttempt(key);
      if (attempt <= faults.tempFailFirst || (attempt === 1 && faults.tempFailRate > 0 && random() < faults.tempFailRate)) {
        stats.tempFailed++;
        callback(smtpError(451, TEMP_FAIL));
        return;
      }
      const msg: Received = {
        id: randomUUID(),
        messageId,
        from: parsed.headers.from ?? (mailFrom ? mailFrom.address : ''),
        to,
        subject: parsed.headers.subject ?? '',
        text: parsed.text,
        headers: parsed.headers,
        size,
        receivedAt: new Date().toISOString(),
      };
      remember(msg);
      callback(null, `OK: queued as ${msg.id}`);
    };
    stream.on('error', (err: Error) => callback(err));
  }

  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    // Clients configured with credentials still get through: any login is accepted.
    allowInsecureAuth: true,
    onAuth: (auth, _session, callback) => callback(null, { user: auth.username ?? 'anonymous' }),
    hideENHANCEDSTATUSCODES: true,
    logger: false,
    // Reverse DNS on every connection costs ~100 ms here and tells a sink nothing.
    disableReverseLookup: true,
    size: maxSize,
    // A sink has nothing to flush; a long grace period would only slow test teardown.
    closeTimeout: 1000,
    onRcptTo,
    onData,
  });
  server.on('error', () => { /* per-connection errors (client resets) are not the sink's concern */ });
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.server.off('error', reject);
      resolve();
    });
  });
  const port = (server.server.address() as AddressInfo).port;

  const api: Omit<SmtpSink, 'url' | 'port' | 'httpUrl' | 'app' | 'close'> = {
    messages: () => [...store.values()],
    byMessageId: (id) => byMsgId.get(normalizeMessageId(id)),
    clear() {
      store.clear();
      byMsgId.clear();
      attempts.clear();
      stats = emptyStats();
    },
    setFaults,
    faults: () => copyFaults(faults),
    stats: () => ({ ...stats, stored: store.size }),
  };
  const app = createSmtpSinkApp(api);

  let http: ServedApp | undefined;
  if (options.httpPort !== undefined) {
    try {
      http = await serveApp(app, { port: options.httpPort, hostname: host });
    } catch (err) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      throw err;
    }
  }

  return {
    url: `smtp://${host}:${port}`,
    port,
    httpUrl: http?.url,
    ...api,
    app,
    async close() {
      await Promise.all([
        new Promise<void>((resolve) => server.close(() => resolve())),
        http?.close(),
      ]);
    },
  };
}

/** The HTTP view of a sink; mount it anywhere, e.g. `root.route('/_dev/mail', sink.app)`. */
function createSmtpSinkApp(sink: Pick<SmtpSink, 'messages' | 'clear' | 'setFaults' | 'faults' | 'stats'>): Hono {
  const app = new Hono();

  app.get('/', (c) => {
    const base = c.req.path.replace(/\/+$/, '');
    const rows = sink.messages().slice(-500).reverse().map((m) => `<tr><td>${esc(m.receivedAt)}</td><td>${esc(m.to.join(', '))}</td><td>${esc(m.subject)}</td><td><code>${esc(m.messageId)}</code></td></tr>`).join('\n');
    const s = sink.stats();
    return c.html(`<!doctype html>
<html><head><meta charset="utf-8"><title>SMTP sink</title>
<style>body{font:14px system-ui,sans-serif;margin:1.5rem}table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.3rem .6rem;text-align:left;vertical-align:top}</style>
</head><body>
<h1>Received mail</h1>
<p>${s.stored} held, ${s.accepted} accepted, ${s.tempFailed} answered 451, ${s.permFailed} recipients refused 550. JSON: <a href="${esc(base)}/messages">messages</a>, <a href="${esc(base)}/stats">stats</a>.</p>
<table><thead><tr><th>received</th><th>to</th><th>subject</th><th>message-id</th></tr></thead>
<tbody>
${rows || '<tr><td colspan="4">nothing yet</td></tr>'}
</tbody></table>
</body></html>`);
  });

  app.get('/messages', (c) => {
    const to = c.req.query('to')?.toLowerCase();
    const q = c.req.query('q')?.toLowerCase();
    const limit = Math.max(1, Math.min(Number(c.req.query('limit')) || 1000, 100_000));
    let items = sink.messages().reverse();
    if (to) items = items.filter((m) => m.to.some((r) => r.toLowerCase() === to));
    if (q) items = items.filter((m) => [m.subject, m.text, m.messageId, m.from].some((f) => f.toLowerCase().includes(q)));
    return c.json({ items: items.slice(0, limit), total: items.length });
  });

  app.delete('/messages', (c) => {
    const deleted = sink.stats().stored;
    sink.clear();
    return c.json({ deleted });
  });

  app.get('/faults', (c) => c.json(sink.faults()));

  app.post('/faults', async (c) => {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return c.json({ error: { code: 'VALIDATION_FAILED', message: 'body is not JSON' } }, 400);
    }
    const parsed = faultsSchema.safeParse(body);
    if (!parsed.success) {
      return c.json({ error: { code: 'VALIDATION_FAILED', message: 'invalid faults', details: parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) } }, 400);
    }
    try {
      return c.json(sink.setFaults(parsed.data));
    } catch (err) {
      return c.json({ error: { code: 'VALIDATION_FAILED', message: (err as Error).message } }, 400);
    }
  });

  app.get('/stats', (c) => c.json(sink.stats()));

  return app;
}

function copyFaults(f: SmtpFaults): SmtpFaults {
  return { ...f, permFailTo: [...f.permFailTo], stallTo: [...f.stallTo] };
}

function emptyStats(): SmtpSinkStats {
  return { accepted: 0, stored: 0, dataAttempts: 0, tempFailed: 0, permFailed: 0, duplicates: 0 };
}

function smtpError(code: number, message: string): Error & { responseCode: number } {
  return Object.assign(new Error(message), { responseCode: code });
}

function toMatcher(spec: string): (address: string) => boolean {
  const m = /^\/(.*)\/([a-z]*)$/s.exec(spec);
  if (m) {
    const re = new RegExp(m[1], m[2]);
    return (address) => { re.lastIndex = 0; return re.test(address); };
  }
  const exact = spec.toLowerCase();
  return (address) => address.toLowerCase() === exact;
}

function normalizeMessageId(id: string): string {
  return id.trim().replace(/^<|>$/g, '').toLowerCase();
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

// --- MIME, through mailparser ------------------------------------------------

/** Headers and the text/plain body of a raw RFC 5322 message. `const { headers, text } = await parseMail(raw)` */
export async function parseMail(raw: Buffer): Promise<{ headers: Record<string, string>; text: string }> {
  const parsed = await simpleParser(raw, { skipHtmlToText: true, skipTextToHtml: true, skipTextLinks: true, skipImageLinks: true });
  const seen = new Map<string, number>();
  for (const { key } of parsed.headerLines) seen.set(key, (seen.get(key) ?? 0) + 1);
  const headers: Record<string, string> = {};
  for (const { key, line } of parsed.headerLines) {
    if (key in headers) continue;
    headers[key] = headerText(parsed.headers.get(key), seen.get(key) === 1, line);
  }
  return { headers, text: (parsed.text ?? '').replace(/\r\n/g, '\n').replace(/\n+$/, '') };
}

/**
 * A header as a string, the way a mail client would show it: mailparser's decoded text
 * for plain headers, addresses rebuilt from their decoded parts (mailparser's own `text`
 * quotes every display name), the raw value for the rest (dates, Content-Type) and for a
 * header that occurs more than once (mailparser keeps the last, we the first).
 */
function headerText(value: HeaderValue | undefined, once: boolean, line: string): string {
  if (once && typeof value === 'string') return value;
  if (once && value && typeof value === 'object' && 'value' in value && Array.isArray(value.value) && 'text' in value) {
    return (value as AddressObject).value.map(formatAddress).join(', ');
  }
  return line.slice(line.indexOf(':') + 1).replace(/\r?\n[ \t]+/g, ' ').trim();
}

function formatAddress(a: EmailAddress): string {
  const name = /[()<>\[\]:;@\\,."]/.test(a.name) ? `"${a.name.replace(/["\\]/g, '\\$&')}"` : a.name;
  if (a.group) return `${name}: ${a.group.map(formatAddress).join(', ')};`;
  return name ? `${name} <${a.address ?? ''}>` : a.address ?? '';
}

if (import.meta.main) {
  const sink = await startSmtpSink({
    port: Number(process.env.SMTP_SINK_PORT ?? 2525),
    httpPort: Number(process.env.SMTP_SINK_HTTP_PORT ?? 8025),
  });
  console.log(`smtp sink: SMTP on ${sink.url}, mail view on ${sink.httpUrl}/`);
  const stop = () => { void sink.close().then(() => process.exit(0)); };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
