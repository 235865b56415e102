// bench:load's plan and arithmetic, kept apart from the processes so they can be tested:
// the phases (issue 15: 10K RPM for 10 minutes, spikes to 3x and 10x, a 30-minute soak),
// the workload mix, the open-loop schedule and the percentiles.

export type Phase = { name: string; rpm: number; seconds: number };

/** Every kind of request the generator sends, in the order the report lists them. */
export const KINDS = ['catalog list', 'catalog item', 'order create', 'order status', 'funding apply', 'funding status', 'lending order', 'lending status'] as const;
export type Kind = (typeof KINDS)[number];

/**
 * The default mix, in requests per 100. A shop is mostly browsing (seed 003's catalog is
 * public and read far more than it is bought from); every order is then polled a couple of
 * times while its saga runs; funding applicants watch their status (seed 001's "live status");
 * lending orders are few but each fans out to T24 (seed 000), whose rate cap is the
 * bottleneck the design exists for.
 */
export const DEFAULT_MIX: Record<Kind, number> = {
  'catalog list': 30, 'catalog item': 20, 'order create': 12, 'order status': 20,
  'funding apply': 5, 'funding status': 8, 'lending order': 3, 'lending status': 2,
};

const num = (env: Record<string, string | undefined>, key: string, dflt: number) => {
  const v = env[key];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${key} must be a number >= 0, not ${v}`);
  return n;
};

/**
 * The phases from the environment. BENCH_LOAD_RPM (10000) is the base rate;
 * BENCH_LOAD_{WARMUP,SUSTAINED,SPIKE3,SPIKE10,SOAK}_MIN (1, 10, 1, 1, 30) the minutes of each, all
 * multiplied by BENCH_LOAD_MINUTES_SCALE (1; 0.1 for a quick run). A phase of 0 minutes is left out.
 * The warm-up (JIT, pools, consumers, caches) is not in the plan; it is reported apart.
 */
export function phasesFrom(env: Record<string, string | undefined>): Phase[] {
  const rpm = num(env, 'BENCH_LOAD_RPM', 10_000);
  if (rpm <= 0) throw new Error('BENCH_LOAD_RPM must be above 0');
  const scale = num(env, 'BENCH_LOAD_MINUTES_SCALE', 1);
  const minutes = (key: string, d: number) => num(env, key, d) * scale * 60;
  return [
    { name: 'warm-up', rpm, seconds: minutes('BENCH_LOAD_WARMUP_MIN', 1) },
    { name: 'sustained', rpm, seconds: minutes('BENCH_LOAD_SUSTAINED_MIN', 10) },
    { name: 'spike 3x', rpm: rpm * 3, seconds: minutes('BENCH_LOAD_SPIKE3_MIN', 1) },
    { name: 'spike 10x', rpm: rpm * 10, seconds: minutes('BENCH_LOAD_SPIKE10_MIN', 1) },
    { name: 'soak', rpm, seconds: minutes('BENCH_LOAD_SOAK_MIN', 30) },
  ].filter((p) => p.seconds > 0);
}

/** BENCH_LOAD_MIX="order create=50,catalog list=50" replaces the default weights (kinds left out weigh 0). */
export function mixFrom(env: Record<string, string | undefined>): Record<Kind, number> {
  const text = env.BENCH_LOAD_MIX;
  if (!text) return { ...DEFAULT_MIX };
  const mix = Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<Kind, number>;
  for (const part of text.split(',')) {
    const [k, v] = part.split('=').map((s) => s.trim());
    if (!KINDS.includes(k as Kind) || !(Number(v) >= 0)) throw new Error(`BENCH_LOAD_MIX: "${part}" is not <kind>=<weight>, kinds: ${KINDS.join(', ')}`);
    mix[k as Kind] = Number(v);
  }
  if (!Object.values(mix).some((w) => w > 0)) throw new Error('BENCH_LOAD_MIX: every weight is 0');
  return mix;
}

/** A picker of kinds in proportion to `mix`, from a uniform number in [0, 1). */
export function picker(mix: Record<Kind, number>): (u: number) => Kind {
  const entries = KINDS.filter((k) => mix[k] > 0).map((k) => [k, mix[k]] as const);
  const total = entries.reduce((s, [, w]) => s + w, 0);
  return (u) => {
    let x = u * total;
    for (const [k, w] of entries) { if (x < w) return k; x -= w; }
    return entries[entries.length - 1]![0];
  };
}

/**
 * Open loop: request i of a phase is due at start + i × 60000 / rpm ms whatever happened to
 * the ones before it, and its latency counts from that instant, so a stalled server (or a
 * stalled generator) shows in the figures instead of quietly lowering the rate
 * (coordinated omission). The indices due by `now` from `next` on.
 */
export function dueBetween(startMs: number, rpm: number, seconds: number, next: number, now: number): { from: number; to: number } {
  const total = Math.floor((rpm * seconds) / 60);
  const gap = 60_000 / rpm;
  const due = Math.min(total, Math.floor((now - startMs) / gap) + 1);
  return { from: next, to: Math.max(next, due) };
}

/** The p-th percentile (nearest rank) of `xs`; NaN when empty. Sorts `xs` in place. */
export function percentile(xs: number[] | Float64Array, p: number): number {
  if (!xs.length) return NaN;
  xs.sort((a, b) => a - b);
  return xs[Math.min(xs.length - 1, Math.max(0, Math.ceil((p / 100) * xs.length) - 1))]!;
}

export const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '–');

/** A markdown table. */
export function table(head: string[], rows: (string | number)[][], align?: ('l' | 'r')[]): string {
  const sep = head.map((_, i) => ((align?.[i] ?? (i === 0 ? 'l' : 'r')) === 'r' ? '---:' : '---'));
  return [head, sep, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}
