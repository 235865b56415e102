// The pull loop every consumer shares: fetch what there is room for, hand each message
// over, and ride out NATS outages. Consumers differ only in how much room they have
// (in-flight slots, batch buffers, an open breaker) and in what they do per message.
import type { Consumer, JsMsg } from '@nats-io/jetstream';
import type { Logger } from './log.ts';

export type PullLoop = {
  consumer: Consumer;
  log: Logger;
  running: () => boolean;
  /** How many messages to fetch now; 0 means wait for `waitForRoom`. */
  room: () => number;
  waitForRoom: () => Promise<unknown>;
  onMessage: (m: JsMsg) => void | Promise<void>;
  /** Names the loop in the fetch-failure warning. */
  what?: string;
};

/** Runs until `running()` turns false; a pull in flight ends at its 1 s expiry. `const loop = pullLoop({ consumer, log, running: () => on, room, waitForRoom, onMessage })` */
export async function pullLoop(o: PullLoop): Promise<void> {
  while (o.running()) {
    const room = o.room();
    if (room <= 0) { await o.waitForRoom(); continue; }
    try {
      const msgs = await o.consumer.fetch({ max_messages: room, expires: 1000 });
      for await (const m of msgs) await o.onMessage(m);
    } catch (err) {
      if (o.running()) {
        o.log.warn({ err: String(err) }, `${o.what ?? 'fetch'} failed; retrying`);
        await new Promise((r) => setTimeout(r, 500));
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
