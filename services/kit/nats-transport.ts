// The NATS socket, with each turn of the event loop's writes sent as one.
//
// Why: on the machines we measure on (VMs), what a message costs is mostly its socket
// write and the wake-up of the process at the other end, not its bytes: bench:funding-cpu
// found 30% of the scoring process's busy time in socket writes, about 0.2 ms each. nats.js
// writes what its protocol queued at the end of each microtask burst, so a handler's ack,
// the next pull, the relay's publishes and a KV request, started a few awaits apart in the
// same turn of the loop, left as separate writes (and nats-server answered each apart).
// This transport holds what is sent until the loop's check phase (setImmediate), after the
// turn's I/O callbacks and their microtasks, so everything one turn sends leaves in one
// write. What it adds to a message's latency is the rest of that turn.
//
// Hand-written because nats.js has no such option; it plugs in where nats.js expects a
// transport (its transport factory) and uses nothing else of its internals.
import { Buffer } from 'node:buffer';
import { setImmediate } from 'node:timers';
import { NodeTransport } from '@nats-io/transport-node/lib/node_transport.js';

export class CoalescingTransport extends NodeTransport {
  #frames: Uint8Array[] = [];
  #scheduled = false;

  override send(frame: Uint8Array): void {
    this.#frames.push(frame);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(this.#flush);
  }

  // Anything held goes out before the connection is closed on purpose.
  override close(err?: Error): Promise<void> {
    this.#flush();
    return super.close(err);
  }

  override disconnect(): void {
    this.#flush();
    super.disconnect();
  }

  #flush = (): void => {
    this.#scheduled = false;
    if (!this.#frames.length) return;
    const frames = this.#frames;
    this.#frames = [];
    super.send(frames.length === 1 ? frames[0]! : Buffer.concat(frames));
  };
}
