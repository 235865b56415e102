// The GitHub Actions workflow runs what .ci/run runs: this fails when the two drift apart
// (a Debian package .ci/run installs that the workflow does not, a different command, a
// service the tests need missing, the image step gone).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const root = new URL('../', import.meta.url).pathname;
type Step = { name?: string; run?: string; uses?: string; with?: Record<string, unknown> };
type Job = { 'runs-on': string; needs?: string; if?: string; services?: Record<string, { image: string; ports?: string[] }>; steps: Step[] };
const workflow = parse(readFileSync(`${root}.github/workflows/ci.yml`, 'utf8')) as { on: Record<string, unknown>; jobs: Record<string, Job> };
const ciRun = readFileSync(`${root}.ci/run`, 'utf8');

/** Debian packages a script installs with apt-get (flags dropped). */
const aptPackages = (script: string) => [...script.matchAll(/apt-get install ([^;|&)\n]+)/g)]
  .flatMap((m) => m[1]!.split(/\s+/)).filter((w) => w && !w.startsWith('-') && w !== '"$@"');

describe('.github/workflows/ci.yml', () => {
  const test = workflow.jobs.test!;
  const runs = test.steps.map((s) => s.run ?? '').join('\n');

  it('runs .ci/run itself on Node 24', () => {
    expect(test.steps.some((s) => s.run?.trim() === 'bash .ci/run')).toBe(true);
    expect(test.steps.find((s) => s.uses?.startsWith('actions/setup-node'))?.with?.['node-version']).toBe(24);
  });

  it('installs every Debian package .ci/run would install', () => {
    const wanted = aptPackages(ciRun);
    expect(wanted).toContain('prometheus');
    const installed = new Set(aptPackages(runs));
    expect(wanted.filter((p) => !installed.has(p))).toEqual([]);
  });

  it('has PostgreSQL 15 and NATS 2.9.10 with JetStream on the ports the tests use', () => {
    expect(test.services?.postgres).toMatchObject({ image: 'postgres:15', ports: ['5432:5432'] });
    expect(runs).toMatch(/docker run .*-p 4222:4222 nats:2\.9\.10 -js/);
  });

  it('runs the performance budgets after the tests, counted in the final line, their figures kept with the results', () => {
    const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.budget).toBe('node bench/budget/main.ts');
    const lines = ciRun.split('\n');
    const tests = lines.findIndex((l) => l.trim() === './dev test');
    const budget = lines.findIndex((l) => l.includes('npm run budget -- --results .test-results/budget.json'));
    expect(tests).toBeGreaterThan(-1);
    expect(budget).toBeGreaterThan(tests);
    // A failed budget fails the build, and the count reads the file the budget wrote.
    expect(lines[budget]).toMatch(/\|\| status=1$/);
    expect(ciRun.slice(ciRun.indexOf(lines[budget]!))).toContain('.test-results/budget.json", "utf8")');
    expect(test.steps.find((s) => s.uses?.startsWith('actions/upload-artifact'))?.with).toMatchObject({ path: '.test-results/' });
  });

  it('builds and pushes the image only on a version tag, after the tests pass', () => {
    const image = workflow.jobs.image!;
    expect(image.needs).toBe('test');
    expect(image.if).toContain("startsWith(github.ref, 'refs/tags/v')");
    expect(image.steps.find((s) => s.uses?.startsWith('docker/build-push-action'))?.with).toMatchObject({ push: true });
  });

  it('the check has teeth: a package missing from the workflow is caught', () => {
    expect(aptPackages('apt-get install -y -qq --no-install-recommends prometheus chromium; x')).toEqual(['prometheus', 'chromium']);
  });
});
