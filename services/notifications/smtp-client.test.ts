// The SMTP client against the sink (a real SMTP server library) and against a scripted
// server for what the sink does not do: no PIPELINING, no EHLO, closing idle
// connections, dropping the line after the message.
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpSink, type SmtpSink } from '../simulators/smtp-sink.ts';
import { composeMail } from './mailer.ts';
import { createSmtpClient, type SmtpError } from './smtp-client.ts';

let sink: SmtpSink;
beforeAll(async () => { sink = await startSmtpSink({ port: 0 }); });
afterAll(async () => { await sink?.close(); });

const mail = (id: string, text = 'hello\n') => composeMail('shop <shop@example.com>', { to: 'ana@example.com', subject: 'hi', text, messageId: `<${id}@orderflow>` });

type Script = { ehlo?: 'pipelining' | 'plain' | 'refused'; rcpt?: string; afterData?: 'ok' | 'drop'; closeIdleAfterMs?: number };

/** A scripted SMTP server; `log` holds every command line it read, per connection. */
async function scriptedServer(script: Script): Promise<{ port: number; log: string[][]; server: Server; messages: string[] }> {
  const log: string[][] = [];
  const messages: string[] = [];
  const server = createServer((sock: Socket) => {
    const lines: string[] = [];
    log.push(lines);
    let buf = '';
    let inData = false;
    let body = '';
    let idle: NodeJS.Timeout | undefined;
    const armIdle = () => { if (script.closeIdleAfterMs) { clearTimeout(idle); idle = setTimeout(() => sock.end('421 idle\r\n'), script.closeIdleAfterMs); } };
    sock.write('220 scripted ESMTP\r\n');
    armIdle();
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      let i: number;
      while ((i = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        armIdle();
        if (inData) {
          if (line === '.') {
            inData = false;
            messages.push(body);
            body = '';
            if (script.afterData === 'drop') { sock.destroy(); return; }
            sock.write('250 queued\r\n');
          } else body += `${line}\n`;
          continue;
        }
        lines.push(line);
        const cmd = line.slice(0, 4).toUpperCase();
        if (cmd === 'EHLO') {
          if (script.ehlo === 'refused') sock.write('502 no ESMTP here\r\n');
          else sock.write(`250-scripted\r\n${script.ehlo === 'pipelining' ? '250-PIPELINING\r\n' : ''}250 8BITMIME\r\n`);
        } else if (cmd === 'HELO') sock.write('250 scripted\r\n');
        else if (cmd === 'MAIL') sock.write('250 ok\r\n');
        else if (cmd === 'RCPT') sock.write(`${script.rcpt ?? '250 ok'}\r\n`);
        else if (cmd === 'DATA') {
          if (script.rcpt && !script.rcpt.startsWith('2')) sock.write('503 no valid recipients\r\n');
          else { inData = true; sock.write('354 go ahead\r\n'); }
        } else if (cmd === 'RSET') sock.write('250 reset\r\n');
        else if (cmd === 'QUIT') sock.end('221 bye\r\n');
        else sock.write('500 what\r\n');
      }
    });
    sock.on('close', () => clearTimeout(idle));
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as { port: number }).port, log, server, messages };
}

describe('SMTP client', () => {
  it('delivers to a real SMTP server, dot-stuffing lines that start with a dot', async () => {
    const port = Number(new URL(sink.url).port);
    const c = createSmtpClient({ host: '127.0.0.1', port, poolSize: 4 });
    try {
      await Promise.all(Array.from({ length: 20 }, (_, i) => c.send({ from: 'shop@example.com', to: 'ana@example.com' }, mail(`dot-${i}`, `first\n.hidden?\n..two\nlast\n`))));
    } finally {
      c.close();
    }
    const got = sink.messages().filter((m) => m.messageId.startsWith('<dot-'));
    expect(got).toHaveLength(20);
    expect(got[0]!.text).toBe('first\n.hidden?\n..two\nlast');
  });

  it('speaks one command at a time to a server without PIPELINING, and HELO to one without EHLO', async () => {
    for (const ehlo of ['plain', 'refused'] as const) {
      const s = await scriptedServer({ ehlo });
      const c = createSmtpClient({ host: '127.0.0.1', port: s.port });
      try {
        await c.send({ from: 'shop@example.com', to: 'ana@example.com' }, mail(`lock-${ehlo}`));
        await c.send({ from: 'shop@example.com', to: 'bob@example.com' }, mail(`lock2-${ehlo}`));
      } finally {
        c.close();
        s.server.close();
      }
      expect(s.log).toHaveLength(1);
      expect(s.log[0]!.slice(ehlo === 'refused' ? 2 : 1, ehlo === 'refused' ? 5 : 4)).toEqual(['MAIL FROM:<shop@example.com>', 'RCPT TO:<ana@example.com>', 'DATA']);
      expect(s.messages).toHaveLength(2);
    }
  });

  it('reports a refused recipient with its code (4xx transient, 5xx permanent) and keeps the connection usable', async () => {
    for (const [rcpt, code] of [['451 try later', 451], ['550 no such user', 550]] as const) {
      for (const ehlo of ['pipelining', 'plain'] as const) {
        const s = await scriptedServer({ ehlo, rcpt });
        const c = createSmtpClient({ host: '127.0.0.1', port: s.port });
        try {
          const err = await c.send({ from: 'shop@example.com', to: 'ana@example.com' }, mail('r')).then(() => null, (e: SmtpError) => e);
          expect(err?.responseCode).toBe(code);
          // The same connection goes on: RSET, then the next transaction.
          await c.send({ from: 'shop@example.com', to: 'ana@example.com' }, mail('r2')).catch(() => {});
        } finally {
          c.close();
          s.server.close();
        }
        expect(s.log).toHaveLength(1);
        expect(s.log[0]).toContain('RSET');
        expect(s.messages).toHaveLength(0);
      }
    }
  });

  it('moves to a fresh connection when the server closed an idle one, without losing the mail', async () => {
    const s = await scriptedServer({ ehlo: 'pipelining', closeIdleAfterMs: 100 });
    const c = createSmtpClient({ host: '127.0.0.1', port: s.port });
    try {
      await c.send({ from: 'shop@example.com', to: 'ana@example.com' }, mail('idle-1'));
      await new Promise((r) => setTimeout(r, 300));
      await c.send({ from: 'shop@example.com', to: 'ana@example.com' }, mail('idle-2'));
    } finally {
      c.close();
      s.server.close();
    }
    expect(s.messages).toHaveLength(2);
    expect(s.log.length).toBe(2);
  });

  it('a line dropped after the message is a transient error without a code, and is not resent by the client', async () => {
    const s = await scriptedServer({ ehlo: 'pipelining', afterData: 'drop' });
    const c = createSmtpClient({ host: '127.0.0.1', port: s.port });
    try {
      const err = await c.send({ from: 'shop@example.com', to: 'ana@example.com' }, mail('drop')).then(() => null, (e: SmtpError) => e);
      expect(err).not.toBeNull();
      expect(err!.responseCode).toBeUndefined();
    } finally {
      c.close();
      s.server.close();
    }
    // Whether it arrived is unknown to the client: the worker retries it (same Message-ID).
    expect(s.messages).toHaveLength(1);
  });

  it('fails a send when nothing answers, instead of hanging', async () => {
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const c = createSmtpClient({ host: '127.0.0.1', port: (silent.address() as { port: number }).port, timeoutMs: 300 });
    try {
      await expect(c.send({ from: 'shop@example.com', to: 'ana@example.com' }, mail('silent'))).rejects.toThrow(/SMTP/);
    } finally {
      c.close();
      silent.close();
    }
  });
});
