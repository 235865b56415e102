import { Kvm } from '@nats-io/kv';
import type { KV } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestNats, type TestNats } from '../testing/index.ts';
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
  it('a lone member gets the whole cap, only once its claim has settled', async () => {
    const { kv } = await bucket('t24-members-lone');
    const rs = createRateShare({ kv, memberId: 'a', totalRps: 5, heartbeatMs });
    await rs.start();
    expect(rs.currentShare()).toBe(0); // joins at 0 until its claim has settled
    await eventually(() => rs.currentShare() === 5, { what: 'share 5' });
    expect(rs.members()).toBe(1);
    expect(rs.isolated()).toBe(false);
    await rs.stop();
    expect(rs.currentShare()).toBe(0);
    expect(rs.heldShare()).toBe(0);
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

  it('a member whose heartbeat stalls past its lease does not resume its old share on a stale read', async () => {
    // A stall between a heartbeat's read and its put (a blocked event loop, a GC pause): the
    // member's key expires meanwhile, the other takes the whole cap, and then the stalled
    // heartbeat's put lands with a decision made on the old view. The first version resumed
    // its share there (5 + 10 of a cap of 10) until its next heartbeat.
    const a = await bucket('t24-members-stall');
    const b = await bucket('t24-members-stall');
    let stall: Promise<void> | undefined;
    let stalled = false;
    // The same bucket object, but its reads can hold their (by then stale) answer.
    const slowKv = Object.create(a.kv) as KV;
    slowKv.get = async (k: string) => {
      const e = await a.kv.get(k);
      if (stall) { stalled = true; await stall; }
      return e;
    };
    const ra = createRateShare({ kv: slowKv, memberId: 'a', totalRps: 10, heartbeatMs });
    const rb = createRateShare({ kv: b.kv, memberId: 'b', totalRps: 10, heartbeatMs });
    await ra.start();
    await rb.start();
    await eventually(() => ra.currentShare() === 5 && rb.currentShare() === 5, { what: '5/5' });
    const sum = watchSum([ra, rb]);

    let release!: () => void;
    stall = new Promise<void>((r) => { release = r; });
    await eventually(() => stalled, { what: 'a heartbeat of a stalls after its read' });
    // a's key ages out; b sees it gone, claims and applies the whole cap.
    await eventually(() => rb.members() === 1 && rb.currentShare() === 10, { what: 'b takes all 10' });
    expect(ra.currentShare()).toBe(0); // fenced by its lease meanwhile
    expect(ra.isolated()).toBe(true);
    stall = undefined;
    release();
    // a's stalled put lands; its next heartbeat reads b's 10 and gives its share up.
    await eventually(() => ra.members() === 2 && rb.members() === 2 && ra.currentShare() + rb.currentShare() === 10 && ra.currentShare() >= 4,
      { timeoutMs: 20_000, what: 'a and b share 10 again' });
    expect(sum.stop()).toBeLessThanOrEqual(10);
    await ra.stop();
    await rb.stop();
  });

  it('refuses a bucket without a TTL', async () => {
    const { kv } = await bucket('t24-members-nottl', {});
    const rs = createRateShare({ kv, memberId: 'a', totalRps: 1, heartbeatMs });
    await expect(rs.start()).rejects.toThrow(/no TTL/);
  });
});
