import { Kvm } from '@nats-io/kv';
import type { KV } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestNats, type TestNats } from '../testing/index.ts';
import { createPacer } from './pacer.ts';
import { createRateShare } from './rate-share.ts';
import type { RateShare } from './rate-share.ts';

const heartbeatMs = 200;
const ttl = 3 * heartbeatMs;

let nats: TestNats;
const conns: NatsConnection[] = [];

async function bucket(name: string, opts: { ttl?: number } = { ttl }): Promise<{ nc: NatsConnection; kv: KV }> {
  const nc = await connect({ servers: nats.url });
  conns.push(nc);
  const kv = await new Kvm(nc).create(name, opts);
  return { nc, kv };
}

// Samples the members' local shares until stopped and remembers the largest sum seen.
function watchSum(shares: RateShare[]) {
  let max = 0;
  const t = setInterval(() => {
    const sum = shares.reduce((a, s) => a + s.currentShare(), 0);
    if (sum > max) max = sum;
  }, 10);
  return { stop: () => { clearInterval(t); return max; } };
}

beforeAll(async () => {
  nats = await startTestNats();
});

afterAll(async () => {
  for (const nc of conns) await nc.close().catch(() => {});
  await nats?.stop();
});

describe('rate share', () => {
  it('a lone member gets the whole cap, and a pacer over it spaces calls 1000/share ms apart', async () => {
    const { kv } = await bucket('t24-members-lone');
    const rs = createRateShare({ kv, memberId: 'a', totalRps: 5, heartbeatMs });
    await rs.start();
    expect(rs.currentShare()).toBe(0); // joins at 0 until its claim has settled
    await eventually(() => rs.currentShare() === 5, { what: 'share 5' });
    expect(rs.members()).toBe(1);

    // As lending/main.ts spends the share.
    const pacer = createPacer({ share: () => rs.currentShare(), margin: 0.05 });
    const grants: number[] = [];
    for (let i = 0; i < 12; i++) {
      (await pacer.acquire())();
      grants.push(Date.now());
    }
    pacer.stop();
    for (let i = 1; i < grants.length; i++) expect(grants[i]! - grants[i - 1]!).toBeGreaterThanOrEqual(200);
    for (const t of grants) expect(grants.filter((g) => g > t - 1000 && g <= t).length).toBeLessThanOrEqual(5);
    await rs.stop();
  });

  it('shares split when a member joins, never summing above the cap, and come back when it dies', async () => {
    const a = await bucket('t24-members-split');
    const b = await bucket('t24-members-split'); // opens the existing bucket on its own connection
    const ra = createRateShare({ kv: a.kv, memberId: 'a', totalRps: 9, heartbeatMs });
    const rb = createRateShare({ kv: b.kv, memberId: 'b', totalRps: 9, heartbeatMs });
    const sum = watchSum([ra, rb]);

    await ra.start();
    await eventually(() => ra.currentShare() === 9, { what: 'a alone holds 9' });
    await rb.start();
    await eventually(() => ra.members() === 2 && rb.members() === 2, { what: 'both see two members' });
    await eventually(() => ra.currentShare() + rb.currentShare() === 9 && rb.currentShare() >= 4, { what: 'split 5/4' });
    expect([ra.currentShare(), rb.currentShare()]).toEqual([5, 4]);

    // b crashes: its connection goes, so it can neither heartbeat nor say goodbye.
    await b.nc.close();
    await eventually(() => rb.currentShare() === 0, { what: 'b fences itself' });
    await eventually(() => ra.members() === 1 && ra.currentShare() === 9, { what: 'a takes the whole cap back' });
    expect(sum.stop()).toBeLessThanOrEqual(9);
    await rb.stop();
    await ra.stop();
  });

  it('a graceful stop hands the share over', async () => {
    const { kv } = await bucket('t24-members-stop');
    const ra = createRateShare({ kv, memberId: 'a', totalRps: 4, heartbeatMs });
    const rb = createRateShare({ kv, memberId: 'b', totalRps: 4, heartbeatMs });
    const sum = watchSum([ra, rb]);
    await ra.start();
    await rb.start();
    await eventually(() => ra.currentShare() === 2 && rb.currentShare() === 2, { what: '2/2' });

    await rb.stop();
    expect(rb.currentShare()).toBe(0);
    await eventually(() => ra.currentShare() === 4, { what: 'a gets 4' });
    expect(sum.stop()).toBeLessThanOrEqual(4);
    await ra.stop();
  });

  it('stops within a couple of heartbeats when NATS is gone, instead of waiting out request timeouts', async () => {
    const own = await startTestNats();
    const nc = await connect({ servers: own.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
    try {
      const kv = await new Kvm(nc).create('t24-members-gone', { ttl });
      const rs = createRateShare({ kv, memberId: 'a', totalRps: 5, heartbeatMs });
      await rs.start();
      await eventually(() => rs.currentShare() === 5, { what: 'share 5' });
      await own.kill();
      // The client keeps reconnecting (as the services' does), so requests wait out their
      // timeouts (seconds); let a heartbeat start into that, then stop.
      await new Promise((r) => setTimeout(r, 2 * heartbeatMs));
      const stopped = await Promise.race([rs.stop().then(() => 'stopped'), new Promise((r) => setTimeout(() => r('still waiting'), 2000))]);
      expect(stopped).toBe('stopped');
      expect(rs.currentShare()).toBe(0);
    } finally {
      await nc.close().catch(() => {});
      await own.stop();
    }
  });

  it('stays under the cap when one member dies while another joins', async () => {
    const members = await Promise.all(['a', 'b', 'c', 'd'].map(async (memberId) => {
      const { nc, kv } = await bucket('t24-members-churn');
      return { nc, rs: createRateShare({ kv, memberId, totalRps: 10, heartbeatMs }) };
    }));
    const [a, b, c, d] = members as [typeof members[0], typeof members[0], typeof members[0], typeof members[0]];
    const sum = watchSum(members.map((m) => m.rs));
    for (const m of [a, b, c]) await m.rs.start();
    await eventually(() => a.rs.currentShare() + b.rs.currentShare() + c.rs.currentShare() === 10, { what: '4/3/3' });
    await Promise.all([c.nc.close(), d.rs.start()]);
    await eventually(() => [a, b, d].every((m) => m.rs.members() === 3) && a.rs.currentShare() + b.rs.currentShare() + d.rs.currentShare() === 10, { what: 'a, b and d share 10' });
    expect(c.rs.currentShare()).toBe(0);
    expect(sum.stop()).toBeLessThanOrEqual(10);
    for (const m of members) await m.rs.stop();
  });

  it('gives members beyond the cap nothing rather than a fraction', async () => {
    const { kv } = await bucket('t24-members-many');
    const rss = ['m1', 'm2', 'm3'].map((memberId) => createRateShare({ kv, memberId, totalRps: 2, heartbeatMs }));
    const sum = watchSum(rss);
    for (const rs of rss) await rs.start();
    await eventually(() => rss.every((r) => r.members() === 3) && rss.reduce((a, r) => a + r.currentShare(), 0) === 2, { what: 'two of three hold 1' });
    expect(rss.map((r) => r.currentShare()).sort()).toEqual([0, 1, 1]);
    expect(sum.stop()).toBeLessThanOrEqual(2);
    for (const rs of rss) await rs.stop();
  });

  it('refuses a bucket without a TTL', async () => {
    const { kv } = await bucket('t24-members-nottl', {});
    const rs = createRateShare({ kv, memberId: 'a', totalRps: 1, heartbeatMs });
    await expect(rs.start()).rejects.toThrow(/no TTL/);
  });
});
