// A small pooled SMTP client for plain `smtp://` servers: EHLO (HELO when EHLO is
// refused), then per message MAIL, RCPT and DATA, written in one go when the server
// offers PIPELINING, and the dot-stuffed message. nodemailer took ~380 µs of CPU per
// mail on this path (its message pipeline of streams, a MimeNode even for raw text);
// the mails are a third of the saga's work, so the plain case gets this instead.
// TLS and AUTH stay with nodemailer (mailer.ts picks).
//
// Errors carry `responseCode` and `response` like nodemailer's, so the caller's rule
// holds: a 5xx reply is permanent, anything else (4xx, a dropped connection, a
// timeout) is transient.
import { connect, type Socket } from 'node:net';
import { hostname } from 'node:os';

export type SmtpError = Error & { responseCode?: number; response?: string };
export type SmtpClient = { send(envelope: { from: string; to: string }, message: string): Promise<void>; close(): void };

type Reply = { code: number; text: string };

const smtpError = (message: string, reply?: Reply): SmtpError =>
  Object.assign(new Error(message), reply ? { responseCode: reply.code, response: `${reply.code} ${reply.text}` } : {});

/** One connection: a queue of expected replies fed by the socket's lines. */
class Connection {
  private buf = '';
  private lines: string[] = [];
  private waiting: { resolve: (r: Reply) => void; reject: (e: Error) => void }[] = [];
  private replies: Reply[] = [];
  private dead: Error | undefined;
  pipelining = false;
  /** Replies read so far: a send that failed before any reply never reached the server's DATA. */
  received = 0;
  /** Transactions finished on this connection (a reused one may have been closed by the server while idle). */
  uses = 0;

  private socket: Socket;

  constructor(socket: Socket, timeoutMs: number) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.setNoDelay(true);
    socket.on('data', (d: string) => this.onData(d));
    socket.on('error', (err) => this.fail(smtpError(`SMTP connection: ${err.message}`)));
    socket.on('close', () => this.fail(smtpError('SMTP connection closed')));
    socket.setTimeout(timeoutMs, () => { this.fail(smtpError(`SMTP: no reply within ${timeoutMs} ms`)); socket.destroy(); });
  }

  /** Alive, and said nothing unasked while idle (a 421 before closing, say). */
  get usable(): boolean { return !this.dead && this.replies.length === 0; }
  get alive(): boolean { return !this.dead; }

  private onData(d: string) {
    this.buf += d;
    let i: number;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i).replace(/\r$/, '');
      this.buf = this.buf.slice(i + 1);
      this.lines.push(line);
      // "250-..." continues a reply; "250 ..." (or a bare code) ends it.
      if (!/^\d{3}-/.test(line)) {
        const code = Number(line.slice(0, 3));
        const text = this.lines.map((l) => l.slice(4)).join('\n');
        this.lines = [];
        const r = { code: Number.isInteger(code) ? code : 0, text };
        this.received++;
        const w = this.waiting.shift();
        if (w) w.resolve(r); else this.replies.push(r);
      }
    }
  }

  private fail(err: Error) {
    if (this.dead) return;
    this.dead = err;
    for (const w of this.waiting.splice(0)) w.reject(err);
  }

  /** The next reply from the server, in order. */
  reply(): Promise<Reply> {
    const r = this.replies.shift();
    if (r) return Promise.resolve(r);
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  write(s: string) {
    if (this.dead) throw this.dead;
    this.socket.write(s);
  }

  close() {
    if (!this.dead) { try { this.socket.write('QUIT\r\n'); } catch { /* closing anyway */ } }
    this.fail(smtpError('SMTP connection closed by us'));
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }
}

/** `const smtp = createSmtpClient({ host, port, poolSize: 8 }); await smtp.send({ from, to }, rfc5322Text)` */
export function createSmtpClient(o: { host: string; port: number; poolSize?: number; timeoutMs?: number; name?: string }): SmtpClient {
  const poolSize = o.poolSize ?? 5;
  const timeoutMs = o.timeoutMs ?? 20_000;
  const name = o.name ?? (hostname() || 'localhost');
  const idle: Connection[] = [];
  const queue: { resolve: (c: Connection) => void; reject: (e: Error) => void }[] = [];
  let open = 0;
  let closed = false;

  const refused = (r: Reply, what: string) => smtpError(`SMTP ${what}: ${r.code} ${r.text}`, r);
  const expect = (r: Reply, ok: (code: number) => boolean, what: string) => {
    if (!ok(r.code)) throw refused(r, what);
  };

  const dial = async (): Promise<Connection> => {
    const socket = connect({ host: o.host, port: o.port });
    const c = new Connection(socket, timeoutMs);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', (err) => reject(smtpError(`SMTP connect: ${err.message}`)));
      socket.once('close', () => reject(smtpError('SMTP connect: closed (or timed out)')));
    });
    try {
      expect(await c.reply(), (n) => n === 220, 'greeting');
      c.write(`EHLO ${name}\r\n`);
      let r = await c.reply();
      if (r.code !== 250) {
        c.write(`HELO ${name}\r\n`);
        r = await c.reply();
        expect(r, (n) => n === 250, 'HELO');
      } else {
        c.pipelining = /^PIPELINING\b/im.test(r.text);
      }
      return c;
    } catch (err) {
      c.close();
      throw err;
    }
  };

  const acquire = async (): Promise<Connection> => {
    if (closed) throw smtpError('SMTP client closed');
    for (let c = idle.pop(); c; c = idle.pop()) {
      if (c.usable) return c;
      c.close();
      open--;
    }
    if (open < poolSize) {
      open++;
      try { return await dial(); } catch (err) { open--; release(undefined); throw err; }
    }
    return await new Promise((resolve, reject) => queue.push({ resolve, reject }));
  };

  /** Hand a connection (or, when it died, a free slot) to the next waiter or back to the pool. */
  function release(c: Connection | undefined) {
    if (c && !c.alive) { open--; c = undefined; }
    const w = queue.shift();
    if (!w) { if (c) idle.push(c); return; }
    if (c) return w.resolve(c);
    open++;
    dial().then(w.resolve, (err) => { open--; w.reject(err); release(undefined); });
  }

  const transaction = async (c: Connection, from: string, to: string, message: string) => {
    const steps = [
      { line: `MAIL FROM:<${from}>\r\n`, ok: [250], what: 'MAIL FROM' },
      { line: `RCPT TO:<${to}>\r\n`, ok: [250, 251], what: 'RCPT TO' },
      { line: 'DATA\r\n', ok: [354], what: 'DATA' },
    ];
    const replies: Reply[] = [];
    if (c.pipelining) {
      c.write(steps.map((st) => st.line).join(''));
      for (let i = 0; i < steps.length; i++) replies.push(await c.reply());
    } else {
      for (const st of steps) {
        c.write(st.line);
        const r = await c.reply();
        replies.push(r);
        if (!st.ok.includes(r.code)) break;
      }
    }
    const bad = steps.findIndex((st, i) => !st.ok.includes(replies[i]?.code ?? 0));
    if (bad >= 0) {
      // Pipelined, DATA may have been accepted after a refused RCPT: end it empty. Then reset.
      if (replies[2]?.code === 354) { c.write('.\r\n'); await c.reply(); }
      c.write('RSET\r\n');
      await c.reply();
      throw refused(replies[bad]!, steps[bad]!.what);
    }
    // Dot-stuffing: a line that starts with '.' gets one more.
    const body = message.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..');
    c.write(`${body}${body.endsWith('\r\n') ? '' : '\r\n'}.\r\n`);
    expect(await c.reply(), (n) => n === 250, 'message');
  };

  return {
    async send({ from, to }, message) {
      if (/[\r\n<>]/.test(from + to)) throw smtpError('SMTP: an address holds a line break or angle bracket', { code: 501, text: 'bad address' });
      for (let attempt = 1; ; attempt++) {
        const c = await acquire();
        const reused = c.uses > 0;
        const before = c.received;
        try {
          await transaction(c, from, to, message);
          c.uses++;
          release(c);
          return;
        } catch (err) {
          const e = err as SmtpError;
          // 421: the server is closing this connection; without a code the connection broke.
          if (e.responseCode === 421 || e.responseCode === undefined) c.close();
          release(c);
          // A pooled connection the server closed while it sat idle fails before any reply
          // (so before DATA: nothing was delivered): that one attempt goes to a fresh connection.
          if (e.responseCode === undefined && reused && c.received === before && attempt === 1 && !closed) continue;
          throw err;
        }
      }
    },
    close() {
      closed = true;
      for (const w of queue.splice(0)) w.reject(smtpError('SMTP client closed'));
      for (const c of idle.splice(0)) c.close();
    },
  };
}
