// Group commit for concurrent callers: inputs that arrive while a flush is running
// (or within maxWaitMs of the first) go to the database together. The lending item
// pump reads and records its items through it (at 1000 items/s ~4 round trips and a
// hot order-row update per item became a few per batch); notifications records each
// accepted mail and SMS through it as soon as it is accepted; order intake and funding
// applications write their rows and outbox events through it, one statement a batch.

export type Batcher<I, O> = {
  (input: I): Promise<O>;
  /** Flush what is queued and wait for every flush in flight. */
  drain(): Promise<void>;
};

export type BatcherOptions = {
  /** Inputs per `run`, at most. */
  maxSize: number;
  /**
   * How long the first input waits for company when a flush could start. Omitted: it
   * goes at once, so at low load nothing waits and a batch forms only from what arrives
   * while every flush slot is busy (an HTTP write's latency is what counts there).
   */
  maxWaitMs?: number;
  /** Flushes in flight at once. Default 1. */
  maxConcurrent?: number;
  /**
   * After a batch fails, its inputs are retried one at a time: 'serial' (default) one
   * after another, 'parallel' all at once, for inputs that cannot conflict with each
   * other, so a burst behind one bad row is not answered at one round trip each.
   */
  isolate?: 'serial' | 'parallel';
};

/**
 * `const read = createBatcher((keys) => readMany(keys), { maxSize: 500, maxWaitMs: 2 }); const row = await read(key)`.
 * `run` answers inputs in order; a per-input outcome (a duplicate, say) is an output the
 * caller turns into its error. When a batch throws it is retried one input at a time,
 * so one bad input fails alone rather than taking its batch with it.
 */
export function createBatcher<I, O>(run: (inputs: I[]) => Promise<O[]>, o: BatcherOptions): Batcher<I, O> {
  type Entry = { input: I; resolve: (v: O) => void; reject: (e: unknown) => void };
  const maxConcurrent = o.maxConcurrent ?? 1;
  let queue: Entry[] = [];
  let timer: NodeJS.Timeout | undefined;
  const running = new Set<Promise<void>>();

  const alone = async (e: Entry) => {
    try {
      e.resolve((await run([e.input]))[0]!);
    } catch (one) {
      e.reject(one);
    }
  };

  const settle = async (batch: Entry[]) => {
    try {
      const out = await run(batch.map((e) => e.input));
      batch.forEach((e, i) => e.resolve(out[i]!));
    } catch (err) {
      if (batch.length === 1) return batch[0]!.reject(err);
      if (o.isolate === 'parallel') {
        await Promise.all(batch.map(alone));
        return;
      }
      for (const e of batch) await alone(e);
    }
  };

  const flush = () => {
    if (timer) { clearTimeout(timer); timer = undefined; }
    while (queue.length && running.size < maxConcurrent) {
      const batch = queue.slice(0, o.maxSize);
      queue = queue.slice(batch.length);
      const p: Promise<void> = settle(batch).finally(() => {
        running.delete(p);
        // Whatever queued meanwhile goes now: the flush we waited for was the delay.
        if (queue.length) flush();
      });
      running.add(p);
    }
  };

  const submit = ((input: I) => new Promise<O>((resolve, reject) => {
    queue.push({ input, resolve, reject });
    if (o.maxWaitMs === undefined || queue.length >= o.maxSize) flush();
    else timer ??= setTimeout(flush, o.maxWaitMs);
  })) as Batcher<I, O>;
  submit.drain = async () => {
    flush();
    while (running.size || queue.length) {
      await Promise.all(running);
      flush();
    }
  };
  return submit;
}
