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
//
// Why the GCRA alone is not enough: it bounds our grants in any 1000 ms of OUR
// clock, but T24 counts a call when it reaches T24. Between the two lie our own
// event loop, the sockets and T24's scheduling, and that delay varies: a T24 (or
// simulator) that stalls 120 ms and then reads every request queued meanwhile
// stamps them all at once, and its window then holds ~1.12 s of our calls. The
// margin's jitter room is 37 ms (6 calls at a share of 150); in the kill -9
// cluster test the simulator's event loop stalled up to 1.2 s and one of its
// windows held up to 27 more calls than we had granted in the same second: a 429
// whenever that meets a second at the full share (the test's 7, the bench's 13). So
// the pacer also holds each call against the share from its grant until
// `windowMs` after the call ended (answered, failed or given up: the caller's
// `release()`), and grants only while fewer than `share` are held. Any window of
// T24's holds at most `share` of our calls, whatever the delays: a call reaches
// T24 after its grant and before its answer, so for the latest-granted call k in
// a T24 window every other call j in it ended after k's grant - 1000 ms and was
// held when k was granted. It costs nothing while the mean time from grant to
// release is under (1 + margin) × 1000 - windowMs (45 ms at 5%): the GCRA's spacing
// binds first. Beyond that the rate is share × 1000 / (windowMs + that mean).
/** Ends the call's hold on the share (it still counts for `windowMs`); once per acquire, idempotent. */
export type Release = () => void;

export type Pacer = {
  /** Resolves when this replica may make one call; call the release once the call has ended. */
  acquire(signal?: AbortSignal): Promise<Release>;
  /** Calls per second it paces at now. */
  currentShare(): number;
  /** Rejects waiting and later acquires. */
  stop(): void;
  granted(): number;
  /** Calls granted and not yet released, plus calls released within the last `windowMs`. */
  held(): number;
};

type Waiter = { resolve: (release: Release) => void; reject: (err: unknown) => void; signal: AbortSignal | undefined; onAbort: () => void };

export class PacerStoppedError extends Error {
  override name = 'PacerStoppedError';
  constructor() {
    super('pacer stopped');
  }
}

/** `const pacer = createPacer({ share: () => rateShare.currentShare(), margin: 0.05 }); const release = await pacer.acquire(); try { await call() } finally { release() }` */
export function createPacer(o: { share: () => number; margin: number; now?: () => number; idlePollMs?: number; windowMs?: number }): Pacer {
  const now = o.now ?? (() => performance.now());
  const margin = Math.max(0, o.margin);
  const idlePollMs = o.idlePollMs ?? 50;
  // T24's window plus a little for its clock's whole milliseconds against ours.
  const windowMs = o.windowMs ?? 1005;
  const waiters: Waiter[] = [];
  let tat = -Infinity;
  let timer: NodeJS.Timeout | undefined;
  let timerAt = Infinity;
  let stopped = false;
  let granted = 0;
  // Calls granted and not released; release times of the others, oldest first.
  let open = 0;
  let ended: number[] = [];
  let endedHead = 0;

  const held = (t: number) => {
    while (endedHead < ended.length && ended[endedHead]! <= t - windowMs) endedHead++;
    if (endedHead > 1024 && endedHead * 2 > ended.length) {
      ended = ended.slice(endedHead);
      endedHead = 0;
    }
    return open + ended.length - endedHead;
  };

  const release = (): Release => {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      open--;
      ended.push(now());
      // Nothing frees up before this call's window has passed; a waiter blocked on
      // calls in flight (no timer set) needs a timer now.
      if (!stopped && waiters.length && !timer) pump();
    };
  };

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
      if (held(t) >= share) {
        // Every held call still in flight: the next release calls pump.
        if (endedHead >= ended.length) return;
        return schedule(Math.max(1, ended[endedHead]! + windowMs - t));
      }
      tat = Math.max(tat, t - burst * interval);
      if (tat > t) return schedule(tat - t);
      tat += interval;
      const w = waiters.shift()!;
      w.signal?.removeEventListener('abort', w.onAbort);
      granted++;
      open++;
      w.resolve(release());
    }
  }

  return {
    currentShare: () => Math.max(0, Math.floor(o.share())),
    granted: () => granted,
    held: () => held(now()),
    acquire(signal?: AbortSignal) {
      if (stopped) return Promise.reject(new PacerStoppedError());
      if (signal?.aborted) return Promise.reject(signal.reason);
      return new Promise<Release>((resolve, reject) => {
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
