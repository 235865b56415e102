// npm run budget: the performance budgets (measure.ts, verdict.ts). Prints the figures
// and thresholds, exits 1 when a budget fails. `--results <file>` also writes
// { passed, failed, verdicts } there, which .ci/run folds into its final count.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULTS, measureBudgets } from './measure.ts';
import { judge, table, THRESHOLDS } from './verdict.ts';

const { values } = parseArgs({ options: { results: { type: 'string' } } });
const started = performance.now();
const figures = await measureBudgets({ ...DEFAULTS, log: (line) => console.error(line) });
const verdicts = judge(figures);
const bareRps = figures.intake.bare.reduce((a, r) => a + r.rps, 0) / figures.intake.bare.length;
const passed = verdicts.filter((v) => v.pass).length;
console.log(`\nPerformance budgets (${((performance.now() - started) / 1000).toFixed(0)} s):\n${table(verdicts)}`);
console.log(`The saga's rate: ${THRESHOLDS.sagaRate}/s × this run's reference ${bareRps.toFixed(0)}/s ÷ ${THRESHOLDS.referenceQuietRps}/s (the reference on the quiet box), at most ${THRESHOLDS.sagaRate}/s.\n`);
if (values.results) {
  mkdirSync(dirname(values.results), { recursive: true });
  writeFileSync(values.results, JSON.stringify({ passed, failed: verdicts.length - passed, verdicts }, null, 2));
}
process.exit(passed === verdicts.length ? 0 : 1);
