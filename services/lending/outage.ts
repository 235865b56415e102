// Whether T24 as a whole is down, or only a few of its loans.
//
// A loan T24 cannot move (locked on their side) answers 503 to every try. When a
// handful of those were all that was left of an order, every recent call failed,
// the old call-share rule read that as an outage, opened the breaker and, with
// every half-open trial landing on one of them, kept it opening (eight times in a
// 3,000-item run). An outage fails every loan it touches; a bad loan fails only
// itself. So the judge counts distinct targets (a loan's move or read) among the
// failures of the last calls: T24 is down when enough different targets failed
// and they are a large enough share of those calls. Repeats of one bad loan add
// calls, never targets.

export type OutagePolicy = {
  /** Fewest calls in the window before any judgement (the old volumeThreshold). */
  minCalls: number;
  /** Fewest distinct failed targets that make an outage; fewer is a few bad loans. */
  minFailedTargets: number;
  /** Share of the window's calls that failed, in percent. */
  errorPct: number;
};

export type OutageSample = { calls: number; failedCalls: number; failedTargets: number };

/** The outage rule. `looksLikeOutage({ calls: 50, failedCalls: 50, failedTargets: 10 }, { minCalls: 10, minFailedTargets: 25, errorPct: 50 }) === false` */
export function looksLikeOutage(s: OutageSample, p: OutagePolicy): boolean {
  return s.calls >= p.minCalls && s.failedTargets >= p.minFailedTargets && s.failedCalls * 100 >= p.errorPct * s.calls;
}

export type OutageWindow = {
  record(target: string, ok: boolean): void;
  sample(): OutageSample;
  clear(): void;
};

type Call = { at: number; target: string; ok: boolean };

/**
 * The last `size` calls no older than `maxAgeMs`. Counting calls rather than
 * seconds makes the judgement as quick at 1000 calls/s as at 20: an outage shows
 * within `size` calls, not after a time window's worth of successes has aged out.
 * `const w = createOutageWindow({ size: 50, maxAgeMs: 10_000 }); w.record('/loans/L-1/reserve', false); w.sample()`
 */
export function createOutageWindow(o: { size: number; maxAgeMs: number; now?: () => number }): OutageWindow {
  const now = o.now ?? Date.now;
  const size = Math.max(1, o.size);
  let calls: Call[] = [];
  let head = 0;
  let failedCalls = 0;
  // Failed calls per target, for the targets with at least one in the window.
  const failed = new Map<string, number>();

  const dropOldest = () => {
    const c = calls[head++]!;
    if (c.ok) return;
    failedCalls--;
    const n = failed.get(c.target)! - 1;
    if (n === 0) failed.delete(c.target);
    else failed.set(c.target, n);
  };
  const expire = () => {
    const oldest = now() - o.maxAgeMs;
    while (head < calls.length && calls[head]!.at < oldest) dropOldest();
    if (head > 1024 && head * 2 > calls.length) {
      calls = calls.slice(head);
      head = 0;
    }
  };

  return {
    record(target, ok) {
      calls.push({ at: now(), target, ok });
      if (!ok) {
        failedCalls++;
        failed.set(target, (failed.get(target) ?? 0) + 1);
      }
      while (calls.length - head > size) dropOldest();
      expire();
    },
    sample() {
      expire();
      return { calls: calls.length - head, failedCalls, failedTargets: failed.size };
    },
    clear() {
      calls = [];
      head = 0;
      failedCalls = 0;
      failed.clear();
    },
  };
}
