// Each mail's (and text's) claim commits as soon as its send is accepted, not with its
// batch: a crash while one mail of a batch hangs must not send the others again.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestCluster, type TestCluster } from '../testing/index.ts';
import { startSmsSimulator } from '../simulators/sms.ts';
import { createClaimWriters, sendNotices, type MailToSend } from './notices.ts';
import { createMailer } from './mailer.ts';
import { createSmsClient } from './sms.ts';

let c: TestCluster;
let sms: Awaited<ReturnType<typeof startSmsSimulator>>;
beforeAll(async () => {
  c = await startTestCluster({ TARGET: 'notifications' });
  sms = await startSmsSimulator({ port: 0, seed: 5 });
});
afterAll(async () => {
  await c?.close();
  await sms?.close();
});

const mail = (to: string): MailToSend => {
  const orderUuid = randomUUID();
  return { msgId: `test:${orderUuid}`, orderUuid, kind: 'received', to, subject: `Order ${orderUuid} received`, text: 'hello\n' };
};
const count = async (table: 'emails' | 'sms', ids: string[]) =>
  (await c.deps.orm.em.fork().execute<{ n: number }[]>(`select count(*)::int as n from notifications.${table} where order_id in (?)`, [ids]))[0]!.n;

describe('claims', () => {
  it('commit as each send is accepted, while another send of the batch still hangs; a concurrent batch waits and sends nothing', async () => {
    const slowTo = `slow-${randomUUID().slice(0, 8)}@example.com`;
    c.sink.setFaults({ stallTo: [slowTo] });
    const mailer = createMailer({ url: c.sink.url, from: 'orderflow <orders@orderflow.local>', poolSize: 4 });
    const ch = { mailer, sms: createSmsClient({ url: sms.url }) };
    const claims = createClaimWriters(c.deps.orm.em);
    try {
      const slow = mail(slowTo);
      const fast = [mail('f1@example.com'), mail('f2@example.com'), mail('f3@example.com')];
      const texts = fast.map((m, i) => ({ msgId: m.msgId, orderUuid: m.orderUuid, kind: 'received' as const, to: `+1555000010${i}`, body: `order ${m.orderUuid} received` }));
      const first = c.deps.orm.em.fork().transactional((em) => sendNotices(ch, claims, em, [slow, ...fast], texts, c.deps.log));

      // Seen from another connection while the batch's transaction is still open.
      const fastIds = fast.map((m) => m.orderUuid);
      await eventually(async () => (await count('emails', fastIds)) === 3 && (await count('sms', fastIds)) === 3, { what: 'the accepted mails and texts recorded while the slow mail hangs', timeoutMs: 10_000 });
      expect(await count('emails', [slow.orderUuid])).toBe(0);
      for (const m of fast) expect(c.sink.messages().filter((r) => r.subject === m.subject)).toHaveLength(1);
      expect(c.sink.messages().filter((r) => r.subject === slow.subject)).toHaveLength(0);

      // The same notices again (a redelivery to another replica): it blocks on the first batch's locks.
      let secondDone = false;
      const second = c.deps.orm.em.fork().transactional((em) => sendNotices(ch, claims, em, [fast[0]!, slow], [texts[0]!], c.deps.log)).finally(() => { secondDone = true; });
      await new Promise((r) => setTimeout(r, 300));
      expect(secondDone).toBe(false);

      c.sink.setFaults({ stallTo: [] });
      expect((await first).failed).toEqual([]);
      expect((await second).failed).toEqual([]);
      expect(await count('emails', [slow.orderUuid])).toBe(1);
      for (const m of [slow, ...fast]) {
        const got = c.sink.messages().filter((r) => r.subject === m.subject);
        expect(got).toHaveLength(1);
        expect(got[0]!.messageId).toBe(`<${m.orderUuid}.received@orderflow>`);
      }
      expect(sms.sim.messages().filter((s) => fastIds.some((id) => s.body.includes(id)))).toHaveLength(3);
    } finally {
      c.sink.setFaults({ stallTo: [] });
      mailer.close();
    }
  });
});
