// The message we hand to SMTP, read back by the sink's MIME parser: what a mail client
// would show must be what the service meant, whatever the characters.
import { describe, expect, it } from 'vitest';
import { parseMail } from '../simulators/smtp-sink.ts';
import { composeMail, envelopeAddress } from './mailer.ts';

const read = (raw: string) => parseMail(Buffer.from(raw));

describe('composeMail', () => {
  it('writes plain ASCII as 7bit with CRLF line ends and the headers the contract needs', async () => {
    const raw = composeMail('orderflow <orders@orderflow.local>', {
      to: 'ana@example.com', subject: 'Order A-1 shipped', text: 'Your order A-1 is on its way.\n\nTracking number: TRK1\n',
      messageId: '<u.shipped@orderflow>', requestId: 'req-1',
    }, new Date('2026-11-21T12:00:00Z'));
    expect(raw).not.toMatch(/[^\r]\n/);
    const { headers, text } = await read(raw);
    expect(headers).toMatchObject({
      from: 'orderflow <orders@orderflow.local>', to: 'ana@example.com', subject: 'Order A-1 shipped',
      'message-id': '<u.shipped@orderflow>', 'x-request-id': 'req-1', 'content-transfer-encoding': '7bit',
      date: 'Sat, 21 Nov 2026 12:00:00 +0000',
    });
    expect(text).toBe('Your order A-1 is on its way.\n\nTracking number: TRK1');
  });

  it('encodes non-ASCII text as quoted-printable and subjects and names as encoded words', async () => {
    const long = `${'é'.repeat(60)} = tail   `;
    const body = `Items:\n  2 × SKU-1\n${long}\n.leading dot\n`;
    const raw = composeMail('Boutique Żółw <shop@example.com>', {
      to: 'ana@example.com', subject: `Commande reçue — ${'ü'.repeat(40)}`, text: body, messageId: '<m@orderflow>',
    });
    for (const line of raw.split('\r\n')) expect(line.length).toBeLessThanOrEqual(76);
    const { headers, text } = await read(raw);
    expect(headers.subject).toBe(`Commande reçue — ${'ü'.repeat(40)}`);
    expect(headers.from).toBe('Boutique Żółw <shop@example.com>');
    expect(headers['content-transfer-encoding']).toBe('quoted-printable');
    // Trailing spaces survive (they are encoded), and so does '='.
    expect(text).toBe(body.replace(/\n$/, ''));
  });

  it('keeps a header to one line whatever the value holds, and quotes specials in a display name', async () => {
    const raw = composeMail('Shop, Inc. <shop@example.com>', {
      to: 'ana@example.com', subject: 'hi', text: 'x', messageId: '<m@orderflow>', requestId: 'abc\r\nBcc: victim@example.com',
    });
    expect(raw).not.toMatch(/^Bcc:/m);
    expect((await read(raw)).headers.from).toBe('"Shop, Inc." <shop@example.com>');
    expect(envelopeAddress('Shop, Inc. <shop@example.com>')).toBe('shop@example.com');
    expect(envelopeAddress('shop@example.com')).toBe('shop@example.com');
  });
});
