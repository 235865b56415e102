// The pull loop every consumer shares: fetch what there is room for, hand each message
// over, and ride out NATS outages. Consumers differ only in how much room they have
// (in-flight slots, batch buffers, an open breaker) and in what they do per message.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Consumer, JsMsg } from '@nats-io/jetstream';
import type { Logger } from './log.ts';

export type PullLoop = {
  consumer: Consumer;
  log: Logger;
  /** Aborted to stop: a pull in flight ends at once (its messages already received are still handed over). */
  signal: AbortSignal;
  /** How many messages to fetch now; 0 means wait for `waitForRoom`. */
  room: () => number;
  waitForRoom: () => Promise<unknown>;
  onMessage: (m: JsMsg) => void | Promise<void>;
  /** Names the loop in the fetch-failure warning. */
  what?: string;
};

const EXPIRES_MS = 1000;
// An idle consumer's pulls: each one that comes back empty doubles the next one's expiry,
// up to this. A pull waits on the server, so a message published meanwhile still arrives
// at once; what changes is the background cost. At 1 s, every consumer of a process cost
// a pull request, its subscription, a heartbeat and a 408 every second whether or not
// anything happened. bench:funding-cpu, `npm start` with nothing to do, same run: 39.3 ms
// of CPU per second across node, nats-server and Postgres with 1 s pulls, 33.3 with these
// (the rest is other pollers: outbox relays, rate-share heartbeats, gauges). Any message
// brings the expiry back to 1 s.
const IDLE_EXPIRES_MAX_MS = 8000;
// Past the client's own 1 s, the server's expiry (counted from when the request reached
// it) has passed unless the request took longer than this to get there. If it did, a
// message may go to the abandoned inbox: it is redelivered after ack_wait, not lost.
const EXPIRY_GRACE_MS = 200;

/** Runs until `signal` is aborted. `const stopping = new AbortController(); const loop = pullLoop({ consumer, log, signal: stopping.signal, room, waitForRoom, onMessage })` */
export async function pullLoop(o: PullLoop): Promise<void> {
  let expires = EXPIRES_MS;
  const running = () => !o.signal.aborted;
  while (running()) {
    const room = o.room();
    if (room <= 0) { await o.waitForRoom(); continue; }
    try {
      const msgs = await o.consumer.fetch({ max_messages: room, expires });
      // nats-server 2.9.10 sometimes retires an expired pull request without the 408
      // that ends the fetch (seen under bench:saga's load: the consumer showed no waiting
      // request and a growing backlog, and the client got neither a 408 nor a heartbeat).
      // nats.js then waits for two missed heartbeats, another second, while messages pile
      // up with nobody pulling them. So end the fetch ourselves once the server's expiry
      // has surely passed; stop() still hands over the messages already received.
      const deadline = setTimeout(() => msgs.stop(), expires + EXPIRY_GRACE_MS);
      // Stopping ends an idle pull at once. (It was a 250 ms check per consumer instead: with
      // twenty consumers in a process, 80 wake-ups a second of an idle process, each dear on a VM.)
      const onStop = () => msgs.stop();
      o.signal.addEventListener('abort', onStop, { once: true });
      if (o.signal.aborted) msgs.stop();
      let got = 0;
      try {
        for await (const m of msgs) { got++; await o.onMessage(m); }
      } finally {
        clearTimeout(deadline);
        o.signal.removeEventListener('abort', onStop);
      }
      expires = got ? EXPIRES_MS : Math.min(expires * 2, IDLE_EXPIRES_MAX_MS);
    } catch (err) {
      expires = EXPIRES_MS;
      // The same stall can still end in "heartbeats missed" (no message or heartbeat in
      // two intervals). It is not an outage: pull again at once, where the pause below
      // would hold back every message behind it.
      if ((err as Error)?.message === 'heartbeats missed') continue;
      if (running()) {
        o.log.warn({ err: String(err) }, `${o.what ?? 'fetch'} failed; retrying`);
        await sleep(500);
      }
    }
  }
}

/** A wait that the next `wake()` (or `maxMs`) ends: for loops waiting on a freed slot. */
export function waker(maxMs: number): { wait(): Promise<void>; wake(): void } {
  let wake: (() => void) | undefined;
  return {
    wait: () => new Promise<void>((r) => { wake = r; setTimeout(r, maxMs); }).finally(() => { wake = undefined; }),
    wake: () => wake?.(),
  };
}
