// The pull loop's own rules, against a scripted consumer: the nats-server quirk it works
// around (a pull that ends on the server with no word to the client) cannot be
// produced on demand with a real server.
import type { Consumer, JsMsg } from '@nats-io/jetstream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { pullLoop } from './pull.ts';

type Scripted = { msgs: string[]; end: 'expires' | 'never' | 'heartbeats missed' };

/** A consumer whose n-th fetch yields `msgs` and then ends as scripted ('never' = hangs until stop()). */
function scriptedConsumer(script: Scripted[]) {
  const calls: { at: number; stopped: boolean; expires: number }[] = [];
  const consumer = {
    async fetch(opts: { expires: number }) {
      const step = script[calls.length] ?? { msgs: [], end: 'never' as const };
      const call = { at: Date.now(), stopped: false, expires: opts.expires };
      calls.push(call);
      let stop!: () => void;
      const stopped = new Promise<void>((r) => { stop = r; });
      return {
        stop() { call.stopped = true; stop(); },
        async *[Symbol.asyncIterator]() {
          for (const s of step.msgs) yield { subject: s } as unknown as JsMsg;
          if (step.end === 'heartbeats missed') throw new Error('heartbeats missed');
          if (step.end === 'expires') return;
          await stopped;
        },
      };
    },
  };
  return { consumer: consumer as unknown as Consumer, calls };
}

const log = pino({ level: 'silent' });

describe('pull loop', () => {
  it('ends a fetch the server retired without a word, and pulls again', async () => {
    const { consumer, calls } = scriptedConsumer([{ msgs: ['a'], end: 'never' }, { msgs: ['b'], end: 'expires' }, { msgs: [], end: 'never' }]);
    const got: string[] = [];
    const stopping = new AbortController();
    const loop = pullLoop({ consumer, log, signal: stopping.signal, room: () => 10, waitForRoom: async () => {}, onMessage: (m) => { got.push(m.subject); } });
    // Without the loop's own deadline the first fetch would hang for ever here.
    while (got.length < 2) await new Promise((r) => setTimeout(r, 50));
    expect(got).toEqual(['a', 'b']);
    expect(calls[0]!.stopped).toBe(true);
    // Not before the server's 1 s expiry has passed.
    expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(990);
    stopping.abort();
    await loop;
  });

  it('takes missed heartbeats as the end of a pull, and any other failure as an outage to wait out', async () => {
    const warned: string[] = [];
    const spyLog = { warn: (_o: unknown, msg: string) => warned.push(msg), debug: () => {}, info: () => {} } as unknown as typeof log;
    const { consumer } = scriptedConsumer([{ msgs: ['a'], end: 'heartbeats missed' }, { msgs: ['b'], end: 'expires' }]);
    const stopping = new AbortController();
    const got: string[] = [];
    const loop = pullLoop({ consumer, log: spyLog, signal: stopping.signal, room: () => 10, waitForRoom: async () => {}, onMessage: (m) => { got.push(m.subject); } });
    while (got.length < 2) await new Promise((r) => setTimeout(r, 5));
    stopping.abort();
    await loop;
    expect(warned).toEqual([]);

    // Any other failure is warned about and waited out before the next pull (an outage must not spin).
    const failing = { calls: [] as number[], async fetch() { failing.calls.push(Date.now()); throw new Error('connection closed'); } };
    const stopping2 = new AbortController();
    const loop2 = pullLoop({ consumer: failing as unknown as Consumer, log: spyLog, signal: stopping2.signal, room: () => 10, waitForRoom: async () => {}, onMessage: () => {} });
    while (failing.calls.length < 2) await new Promise((r) => setTimeout(r, 20));
    stopping2.abort();
    await loop2;
    expect(warned[0]).toBe('fetch failed; retrying');
    expect(failing.calls[1]! - failing.calls[0]!).toBeGreaterThanOrEqual(490);
  });

  it('pulls for longer and longer while nothing comes, and for 1 s again after a message', async () => {
    const empty = { msgs: [], end: 'expires' as const };
    const { consumer, calls } = scriptedConsumer([empty, empty, empty, empty, empty, { msgs: ['a'], end: 'expires' }, empty, { msgs: ['b'], end: 'expires' }]);
    const got: string[] = [];
    const stopping = new AbortController();
    const loop = pullLoop({ consumer, log, signal: stopping.signal, room: () => 10, waitForRoom: async () => {}, onMessage: (m) => { got.push(m.subject); } });
    while (got.length < 2) await new Promise((r) => setTimeout(r, 5));
    stopping.abort();
    // The ninth pull hangs (the script has run out) until stopping ends it.
    await loop;
    expect(calls.map((c) => c.expires)).toEqual([1000, 2000, 4000, 8000, 8000, 8000, 1000, 2000, 1000]);
  });

  it('stops without waiting out a long idle pull', async () => {
    const empty = { msgs: [], end: 'expires' as const };
    // Three empty pulls, then one of 8 s that the server never answers.
    const { consumer, calls } = scriptedConsumer([empty, empty, empty, { msgs: [], end: 'never' }]);
    const stopping = new AbortController();
    const loop = pullLoop({ consumer, log, signal: stopping.signal, room: () => 10, waitForRoom: async () => {}, onMessage: () => {} });
    while (calls.length < 4) await new Promise((r) => setTimeout(r, 5));
    expect(calls[3]!.expires).toBe(8000);
    stopping.abort();
    // Without stopping the pull the loop would end only at its own deadline, 8.2 s from now.
    const ended = await Promise.race([loop.then(() => 'ended'), new Promise((r) => setTimeout(() => r('still pulling'), 5000))]);
    expect(ended).toBe('ended');
    expect(calls[3]!.stopped).toBe(true);
  }, 20_000);
});
