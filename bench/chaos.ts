// `npm run chaos`: the chaos suite for minutes (services/testing/chaos.ts has the topology,
// the faults and the invariants). It lives beside the benchmarks because, like them, it is a
// long run of the whole system in separate processes that prints a report; its short round
// runs in CI as services/chaos.test.ts.
//   CHAOS_SEED=42 npm run chaos              reproduce a run (the seed fixes the fault schedule)
//   CHAOS_DURATION_S=600 CHAOS_RPS=15        longer, more load (default 300 s of faults, 8 requests/s)
//   CHAOS_FAULTS=kill9:postgres,blackhole:nats   only these kinds
// Exit status 1 when an invariant breaks or a fault does not recover.
import { runChaos, type FaultKind } from '../services/testing/chaos.ts';

const seed = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 1_000_000));
const durationS = Number(process.env.CHAOS_DURATION_S ?? 300);
const report = await runChaos({
  seed,
  durationMs: durationS * 1000,
  faults: Number(process.env.CHAOS_MAX_FAULTS ?? 40),
  faultMs: [3000, 8000],
  gapMs: [2000, 4000],
  clients: Number(process.env.CHAOS_CLIENTS ?? 4),
  rps: Number(process.env.CHAOS_RPS ?? 8),
  recoveryTimeoutMs: 120_000,
  drainTimeoutMs: 240_000,
  kinds: process.env.CHAOS_FAULTS ? process.env.CHAOS_FAULTS.split(',').map((k) => k.trim() as FaultKind) : undefined,
  log: (line) => console.log(line),
});

console.log('\nper fault: kind | lasted | first 202 after heal | probe final after heal | workload during (202 / refused / errors)');
for (const f of report.faults) {
  console.log(`${f.kind}${f.latencyMs ? ` +${f.latencyMs}ms` : ''} | ${(f.durationMs / 1000).toFixed(1)} s | ${f.firstAcceptMs ?? '-'} ms | ${f.recoveryMs ?? 'NOT RECOVERED'} ms | ${f.during.accepted} / ${f.during.refused} / ${f.during.errors} ${JSON.stringify(f.during.statuses)}`);
}
console.log(`baseline (no fault): probe final after ${report.baselineMs} ms`);
console.log(`\nseed ${report.seed}, ${report.faults.length} faults, ${(report.elapsedMs / 1000).toFixed(0)} s: ${report.ok ? 'ALL INVARIANTS HELD' : 'FAILED'}`);
if (process.env.CHAOS_JSON) {
  const { writeFileSync } = await import('node:fs');
  writeFileSync(process.env.CHAOS_JSON, JSON.stringify(report, null, 2));
}
process.exit(report.ok ? 0 : 1);
