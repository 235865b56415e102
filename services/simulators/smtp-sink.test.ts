import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import nodemailer from 'nodemailer';
import { Hono } from 'hono';
import type { Transporter } from 'nodemailer';
import { startSmtpSink, parseMail } from './smtp-sink.ts';
import type { SmtpSink } from './smtp-sink.ts';

describe('smtp sink', () => {
  let sink: SmtpSink;
  let transport: Transporter;

  beforeAll(async () => {
    sink = await startSmtpSink({ seed: 7 });
    transport = nodemailer.createTransport({ host: '127.0.0.1', port: sink.port, secure: false, ignoreTLS: true });
  });
  afterAll(async () => {
    transport.close();
    await sink.close();
  });
  beforeEach(() => {
    sink.clear();
    sink.setFaults({ tempFailFirst: 0, tempFailRate: 0, permFailTo: [], permFailAll: false, stallTo: [] });
  });

  it('keeps what nodemailer sends', async () => {
    const info = await transport.sendMail({
      from: 'Orderflow <noreply@orderflow.test>',
      to: 'ana@example.com',
      subject: 'Order A-1001 received — ünïcode',
      text: 'Thanks for your order A-1001.\nWe will email you when it ships. ' + 'x'.repeat(120),
      html: '<p>Thanks</p>',
    });
    expect(sink.url).toBe(`smtp://127.0.0.1:${sink.port}`);
    const msgs = sink.messages();
    expect(msgs).toHaveLength(1);
    const m = msgs[0];
    expect(m.messageId).toBe(info.messageId);
    expect(m.to).toEqual(['ana@example.com']);
    expect(m.subject).toBe('Order A-1001 received — ünïcode');
    expect(m.from).toContain('noreply@orderflow.test');
    expect(m.text).toBe('Thanks for your order A-1001.\nWe will email you when it ships. ' + 'x'.repeat(120));
    expect(m.size).toBeGreaterThan(0);
    expect(sink.byMessageId(info.messageId)).toBe(m);
    expect(sink.byMessageId(info.messageId.slice(1, -1))).toBe(m);
    expect(sink.stats()).toMatchObject({ accepted: 1, stored: 1, dataAttempts: 1, tempFailed: 0, duplicates: 0 });
  });

  it('answers 451 to the first attempt of each Message-ID, then accepts the retry', async () => {
    sink.setFaults({ tempFailFirst: 1 });
    const mail = { from: 'noreply@orderflow.test', to: 'bo@example.com', subject: 'retry me', text: 'hi', messageId: '<retry-1@orderflow.test>' };
    const err = await transport.sendMail(mail).then(() => undefined, (e: unknown) => e as { responseCode?: number; response?: string });
    expect(err?.responseCode).toBe(451);
    expect(err?.response).toContain('451 4.3.0 Temporary failure');
    expect(sink.messages()).toHaveLength(0);

    await transport.sendMail(mail);
    expect(sink.messages()).toHaveLength(1);
    expect(sink.byMessageId('<retry-1@orderflow.test>')?.subject).toBe('retry me');

    // Another Message-ID gets its own first failure.
    await expect(transport.sendMail({ ...mail, messageId: '<retry-2@orderflow.test>' })).rejects.toMatchObject({ responseCode: 451 });
    expect(sink.stats()).toMatchObject({ accepted: 1, tempFailed: 2, dataAttempts: 3 });
  });

  it('fails a seeded fraction of first attempts only', async () => {
    sink.setFaults({ tempFailRate: 0.5, seed: 42 });
    // One pooled connection: the server holds every new connection ~100 ms to catch early talkers.
    const pooled = nodemailer.createTransport({ host: '127.0.0.1', port: sink.port, secure: false, ignoreTLS: true, pool: true, maxConnections: 1 });
    let failedFirst = 0;
    for (let i = 0; i < 40; i++) {
      const mail = { from: 'a@orderflow.test', to: 'c@example.com', subject: `n${i}`, text: 'x', messageId: `<rate-${i}@orderflow.test>` };
      try {
        await pooled.sendMail(mail);
      } catch (err) {
        expect((err as { responseCode?: number }).responseCode).toBe(451);
        failedFirst++;
        await pooled.sendMail(mail); // a second attempt is never failed by the rate
      }
    }
    pooled.close();
    expect(failedFirst).toBeGreaterThan(0);
    expect(failedFirst).toBeLessThan(40);
    expect(sink.messages()).toHaveLength(40);
    expect(sink.stats().tempFailed).toBe(failedFirst);
  });

  it('refuses permFailTo recipients with 550', async () => {
    sink.setFaults({ permFailTo: ['dead@example.com', '/@bounce\\.test$/i'] });
    for (const to of ['dead@example.com', 'DEAD@example.com', 'x@Bounce.test']) {
      const err = await transport.sendMail({ from: 'a@orderflow.test', to, subject: 's', text: 't' }).then(() => undefined, (e: unknown) => e as { responseCode?: number; response?: string });
      expect(err?.responseCode).toBe(550);
      expect(err?.response).toContain('550 5.1.1 Mailbox unavailable');
    }
    await transport.sendMail({ from: 'a@orderflow.test', to: 'alive@example.com', subject: 's', text: 't' });
    expect(sink.messages().map((m) => m.to)).toEqual([['alive@example.com']]);
    expect(sink.stats().permFailed).toBe(3);

    sink.setFaults({ permFailTo: [], permFailAll: true });
    await expect(transport.sendMail({ from: 'a@orderflow.test', to: 'alive@example.com', subject: 's', text: 't' })).rejects.toMatchObject({ responseCode: 550 });
  });

  it('holds the answer to DATA for stallTo recipients until the fault is lifted', async () => {
    const res = await sink.app.request('/faults', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ stallTo: ['/^slow@/'] }) });
    expect(res.status).toBe(200);
    let answered = false;
    const slow = transport.sendMail({ from: 'a@orderflow.test', to: 'slow@example.com', subject: 'held', text: 't', messageId: '<held@orderflow.test>' }).finally(() => { answered = true; });
    await transport.sendMail({ from: 'a@orderflow.test', to: 'quick@example.com', subject: 'quick', text: 't' });
    await new Promise((r) => setTimeout(r, 200));
    expect(answered).toBe(false);
    expect(sink.messages().map((m) => m.subject)).toEqual(['quick']);
    sink.setFaults({ stallTo: [] });
    await slow;
    expect(sink.byMessageId('<held@orderflow.test>')?.to).toEqual(['slow@example.com']);
  });

  it('serves an HTTP view', async () => {
    await transport.sendMail({ from: 'a@orderflow.test', to: 'ana@example.com', subject: 'Order A-1 <b>', text: 'one', messageId: '<h1@orderflow.test>' });
    await transport.sendMail({ from: 'a@orderflow.test', to: 'bo@example.com', subject: 'Order B-2', text: 'two', messageId: '<h2@orderflow.test>' });

    const page = await sink.app.request('/');
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('Order A-1 &#60;b&#62;');
    expect(html.indexOf('Order B-2')).toBeLessThan(html.indexOf('Order A-1')); // newest first

    const all = await (await sink.app.request('/messages')).json() as { items: Array<{ subject: string }>; total: number };
    expect(all.items.map((m) => m.subject)).toEqual(['Order B-2', 'Order A-1 <b>']);
    const byTo = await (await sink.app.request('/messages?to=ANA@example.com')).json() as { items: Array<{ messageId: string }> };
    expect(byTo.items.map((m) => m.messageId)).toEqual(['<h1@orderflow.test>']);
    const byQ = await (await sink.app.request('/messages?q=two')).json() as { items: Array<{ subject: string }> };
    expect(byQ.items.map((m) => m.subject)).toEqual(['Order B-2']);

    const faults = await sink.app.request('/faults', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ permFailTo: ['ana@example.com'] }) });
    expect(faults.status).toBe(200);
    expect(sink.faults().permFailTo).toEqual(['ana@example.com']);
    const bad = await sink.app.request('/faults', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tempFailRate: 2 }) });
    expect(bad.status).toBe(400);
    await expect(transport.sendMail({ from: 'a@orderflow.test', to: 'ana@example.com', subject: 's', text: 't' })).rejects.toMatchObject({ responseCode: 550 });

    const stats = await (await sink.app.request('/stats')).json();
    expect(stats).toMatchObject({ accepted: 2, stored: 2, permFailed: 1 });

    // Mounted as `npm start` does it, the page links stay under the mount point.
    const root = new Hono().route('/_dev/mail', sink.app);
    const mounted = await root.request('/_dev/mail');
    expect(await mounted.text()).toContain('href="/_dev/mail/messages"');
    expect((await root.request('/_dev/mail/messages?to=bo@example.com')).status).toBe(200);

    const del = await sink.app.request('/messages', { method: 'DELETE' });
    expect(del.status).toBe(200);
    expect(sink.messages()).toHaveLength(0);
  });

  it('counts a resent Message-ID as a duplicate', async () => {
    const mail = { from: 'a@orderflow.test', to: 'ana@example.com', subject: 'twice', text: 't', messageId: '<dup@orderflow.test>' };
    await transport.sendMail(mail);
    await transport.sendMail(mail);
    expect(sink.stats()).toMatchObject({ accepted: 2, duplicates: 1 });
    expect(sink.byMessageId('<dup@orderflow.test>')?.id).toBe(sink.messages()[0].id);
  });
});

describe('smtp sink standalone', () => {
  it('serves the HTTP view on its own port and drops the oldest beyond the cap', async () => {
    const sink = await startSmtpSink({ httpPort: 0, maxMessages: 2 });
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: sink.port, secure: false, ignoreTLS: true });
    try {
      for (const n of [1, 2, 3]) await transport.sendMail({ from: 'a@orderflow.test', to: 'z@example.com', subject: `s${n}`, text: 't' });
      expect(sink.messages().map((m) => m.subject)).toEqual(['s2', 's3']);
      const res = await fetch(`${sink.httpUrl}/messages`);
      const body = await res.json() as { items: Array<{ subject: string }> };
      expect(body.items.map((m) => m.subject)).toEqual(['s3', 's2']);
    } finally {
      transport.close();
      await sink.close();
    }
  });
});

describe('parseMail', () => {
  it('decodes base64 text parts inside nested multiparts and encoded-word subjects', async () => {
    const raw = [
      'Subject: =?UTF-8?B?w6lsw6h2ZQ==?= =?UTF-8?Q?_caf=C3=A9?=',
      'Message-ID: <p@x>',
      'Content-Type: multipart/mixed; boundary="outer"',
      '',
      'preamble',
      '--outer',
      'Content-Type: multipart/alternative; boundary=inner',
      '',
      '--inner',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: base64',
      '',
      Buffer.from('héllo\r\nworld').toString('base64'),
      '--inner',
      'Content-Type: text/html',
      '',
      '<p>x</p>',
      '--inner--',
      '--outer--',
      '',
    ].join('\r\n');
    const { headers, text } = await parseMail(Buffer.from(raw));
    expect(headers.subject).toBe('élève café');
    expect(headers['message-id']).toBe('<p@x>');
    expect(text).toBe('héllo\nworld');
  });
});
