// The SMS client's own retries, against the SMS simulator: a flaky provider is retried
// inside one delivery (under the same Idempotency-Key), a long rate limit is not waited out.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RetryLaterError } from '../kit/index.ts';
import { startSmsSimulator } from '../simulators/sms.ts';
import { createSmsClient, SmsTransientError } from './sms.ts';

let sms: Awaited<ReturnType<typeof startSmsSimulator>>;
beforeAll(async () => { sms = await startSmsSimulator({ port: 0, seed: 1 }); });
afterAll(async () => { await sms?.close(); });

describe('SMS client', () => {
  it('tries a failing provider three times in one send, then reports a transient failure', async () => {
    sms.sim.reset();
    sms.sim.setKnobs({ fail503Rate: 1 });
    const client = createSmsClient({ url: sms.url });
    await expect(client.send({ to: '+15550001111', body: 'hi', key: 'k-503' })).rejects.toBeInstanceOf(SmsTransientError);
    expect(sms.sim.stats().failed503).toBe(3);
    sms.sim.setKnobs({ fail503Rate: 0 });
    expect(await client.send({ to: '+15550001111', body: 'hi', key: 'k-503' })).not.toBe('');
    expect(sms.sim.messages('+15550001111')).toHaveLength(1);
  });

  it('waits out a short Retry-After inside the send, and defers at once when it is longer than allowed', async () => {
    sms.sim.reset();
    sms.sim.setKnobs({ rate429: 1 });
    const patient = createSmsClient({ url: sms.url, attempts: 2, maxInlineWaitMs: 2000 });
    const started = Date.now();
    await expect(patient.send({ to: '+15550002222', body: 'hi', key: 'k-429a' })).rejects.toBeInstanceOf(RetryLaterError);
    expect(sms.sim.stats().rateLimited).toBe(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(990);

    const hurried = createSmsClient({ url: sms.url, maxInlineWaitMs: 0 });
    await expect(hurried.send({ to: '+15550002222', body: 'hi', key: 'k-429b' })).rejects.toBeInstanceOf(RetryLaterError);
    expect(sms.sim.stats().rateLimited).toBe(3);
    sms.sim.setKnobs({ rate429: 0 });
  });
});
