// CPU cost of one risk score, and pool throughput by thread count.
// Run: node services/funding/risk-model.bench.ts [maxThreads]
// Not a test: it prints numbers for docs/benchmarks.md and asserts nothing.
import { availableParallelism, cpus } from 'node:os';
import { measureCpuPerScore, measurePoolThroughput, sampleRiskInput } from './risk-pool.ts';
import { MODEL_VERSION, MODEL_VERSIONS, SIMULATION_PATHS, scoreApplication } from './risk-model.ts';

const maxThreads = Number(process.argv[2] ?? availableParallelism());
console.log(`risk model ${MODEL_VERSION}, ${SIMULATION_PATHS} paths; ${cpus()[0]?.model ?? 'cpu'} x${availableParallelism()}, node ${process.version}`);

// The contract's example (no early defaults, so every path runs the full term).
const fullTerm = (months: number) => (i: number) => ({
  applicationId: `bench-${i}`,
  amount: 50_000 + i,
  currency: 'EUR',
  termMonths: months,
  financials: { annualRevenue: 1_200_000, yearsTrading: 6, existingDebt: 0 },
});

// Approval rates per model version on the same inputs (the bench's mixed sample): what a
// rollout of funding.riskModel changes. BENCH_DECISION_SAMPLES sets how many.
const decisionSamples = Number(process.env.BENCH_DECISION_SAMPLES ?? 300);
const perVersion = MODEL_VERSIONS.map((modelVersion) => {
  const counts = { approved: 0, pending_review: 0, rejected: 0 };
  let pd = 0;
  for (let i = 0; i < decisionSamples; i++) {
    const r = scoreApplication({ ...sampleRiskInput(i), modelVersion });
    counts[r.decision]++;
    pd += r.probabilityOfDefault;
  }
  const share = (n: number) => `${((100 * n) / decisionSamples).toFixed(1)}%`;
  return { modelVersion, samples: decisionSamples, approved: share(counts.approved), pending_review: share(counts.pending_review), rejected: share(counts.rejected), meanPD: (pd / decisionSamples).toFixed(4) };
});
console.log('\ndecisions per model version, mixed sample, 24 months');
console.table(perVersion);
if (process.env.BENCH_DECISIONS_ONLY === '1') process.exit(0);

const rows = [
  { workload: 'mixed sample, 24 months', ...measureCpuPerScore({ samples: 60 }) },
  { workload: 'full term, 12 months', ...measureCpuPerScore({ samples: 30, input: fullTerm(12) }) },
  { workload: 'full term, 24 months', ...measureCpuPerScore({ samples: 30, input: fullTerm(24) }) },
  { workload: 'full term, 60 months', ...measureCpuPerScore({ samples: 15, input: fullTerm(60) }) },
];
console.log('\nCPU per score on one thread (ms)');
console.table(rows);

const pool = [];
for (let threads = 1; threads <= maxThreads; threads *= 2) {
  pool.push(await measurePoolThroughput({ threads, tasks: 150, input: (i) => sampleRiskInput(i) }));
  if (threads * 2 > maxThreads && threads !== maxThreads) pool.push(await measurePoolThroughput({ threads: maxThreads, tasks: 150 }));
}
console.log('\npool throughput, mixed sample, 24 months');
console.table(pool);
