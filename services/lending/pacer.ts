// Call pacing at this replica's share of T24_MAX_RPS, as a GCRA (virtual
// scheduling) over `currentShare()` of the rate share.
//
// Why a GCRA: spacing each grant from the previous *real* grant time in whole
// milliseconds (what rate-share.ts, now kit/rate-share.ts, once did itself) loses timer lateness and
// rounding for good. Measured on the 2-core box: 436 grants/s at a share of 1000,
// 163/s at 200. Here the schedule advances by the interval whatever the timer
// did, and a late timer grants every call that is due at once.
//
// The bound. Interval T = 1000/s × (1 + m). A grant needs tat ≤ now, and tat
// never lags now by more than τ = b × T, after which it advances by T. For n
// grants inside any 1000 ms: (n - 1) × T < 1000 + τ, so n < 1 + s/(1 + m) + b.
// With b = floor(s × (m/4) / (1 + m)), n ≤ s, and three quarters of the margin
// stay for jitter between our clock and T24's (37 ms at m = 5%; the bench saw one
// 429 at R = 200 with half). b is 2 calls at s = 200 and 11 at s = 1000: enough to
// catch up a timer that fires an interval or two late. A shrinking share
// takes effect on the next grant; a growing one comes through rate-share's
// two-phase claim, which is what keeps the replicas' sum within the cap.
export type Pacer = {
  /** Resolves when this replica may make one call. */
  acquire(signal?: AbortSignal): Promise<void>;
  /** Calls per second it paces at now. */
  currentShare(): number;
  /** Rejects waiting and later acquires. */
  stop(): void;
  granted(): number;
};

type Waiter = { resolve: () => void; reject: (err: unknown) => void; signal: AbortSignal | undefined; onAbort: () => void };

export class PacerStoppedError extends Error {
  override name = 'PacerStoppedError';
  constructor() {
    super('pacer stopped');
  }
}

/** `const pacer = createPacer({ share: () => rateShare.currentShare(), margin: 0.05 }); await pacer.acquire()` */
export function createPacer(o: { share: () => number; margin: number; now?: () => number; idlePollMs?: number }): Pacer {
  const now = o.now ?? (() => performance.now());
  const margin = Math.max(0, o.margin);
  const idlePollMs = o.idlePollMs ?? 50;
  const waiters: Waiter[] = [];
  let tat = -Infinity;
  let timer: NodeJS.Timeout | undefined;
  let timerAt = Infinity;
  let stopped = false;
  let granted = 0;

  const schedule = (delayMs: number) => {
    const at = now() + delayMs;
    if (timer && timerAt <= at) return;
    if (timer) clearTimeout(timer);
    timerAt = at;
    timer = setTimeout(() => { timer = undefined; timerAt = Infinity; pump(); }, Math.max(0, delayMs));
  };

  function pump() {
    while (waiters.length) {
      const share = Math.floor(o.share());
      // Joining or fenced: nothing to hand out; look again shortly.
      if (share <= 0) return schedule(idlePollMs);
      const interval = (1000 / share) * (1 + margin);
      const burst = Math.floor((share * (margin / 4)) / (1 + margin));
      const t = now();
      tat = Math.max(tat, t - burst * interval);
      if (tat > t) return schedule(tat - t);
      tat += interval;
      const w = waiters.shift()!;
      w.signal?.removeEventListener('abort', w.onAbort);
      granted++;
      w.resolve();
    }
  }

  return {
    currentShare: () => Math.max(0, Math.floor(o.share())),
    granted: () => granted,
    acquire(signal?: AbortSignal) {
      if (stopped) return Promise.reject(new PacerStoppedError());
      if (signal?.aborted) return Promise.reject(signal.reason);
      return new Promise<void>((resolve, reject) => {
        const w: Waiter = {
          resolve, reject, signal,
          onAbort: () => {
            const i = waiters.indexOf(w);
            if (i >= 0) waiters.splice(i, 1);
            reject(signal!.reason);
          },
        };
        signal?.addEventListener('abort', w.onAbort, { once: true });
        waiters.push(w);
        // A pending timer serves this waiter in turn; otherwise see now.
        if (!timer) pump();
      });
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      for (const w of waiters.splice(0)) {
        w.signal?.removeEventListener('abort', w.onAbort);
        w.reject(new PacerStoppedError());
      }
    },
  };
}
