// The scoring pool in a supervised child process (issue 14 item 6; scoring-process.ts).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestCluster, type TestCluster } from '../testing/index.ts';
import { startGatewaySimulator, type RunningGatewaySimulator } from '../simulators/gateway.ts';
import { scoringPlacement } from './scoring-process.ts';
import { rejectedBody, waitForStatus } from './test-fixtures.ts';

/** Processes whose parent is this one and that run services/main.ts. */
const children = () => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
  try {
    const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('services/main.ts');
  } catch { return false; }
}).map(Number);
const alive = (pid: number) => existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));

let c: TestCluster;
let gw: RunningGatewaySimulator;
beforeAll(async () => {
  gw = await startGatewaySimulator({ port: 0, seed: 3 });
  c = await startTestCluster({
    TARGET: 'funding,funding-scoring', FUNDING_SCORING_PROCESS: 'child', PAYMENT_GATEWAY_URL: gw.url, FUNDING_RISK_THREADS: '1',
    FUNDING_RISK_NICE: '9', FUNDING_RECONCILE_INTERVAL_MS: '0',
  });
});
afterAll(async () => { await c?.close(); await gw?.close(); });

describe('scoring in a supervised child process', () => {
  it('is the default for TARGET=all only', () => {
    expect(scoringPlacement({}, 'all')).toBe('child');
    expect(scoringPlacement({}, 'funding,funding-scoring')).toBe('inline');
    expect(scoringPlacement({ FUNDING_SCORING_PROCESS: 'inline' }, 'all')).toBe('inline');
    expect(scoringPlacement({ FUNDING_SCORING_SUPERVISED: '1' }, 'all')).toBe('inline');
    expect(() => scoringPlacement({ FUNDING_SCORING_PROCESS: 'sometimes' }, 'all')).toThrow(/FUNDING_SCORING_PROCESS/);
  });

  it('scores in the child, not in this process; the child leads its own session at a lower group priority; its metrics are on this /metrics', async () => {
    const id = (await c.post('/api/funding/applications', rejectedBody())).body.id as string;
    await waitForStatus(c.get, id, 'rejected', 120_000);
    const [pid] = children();
    expect(pid).toBeDefined();
    // No scoring threads here.
    const threads = readdirSync('/proc/self/task').filter((t) => { try { return readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() === 'WorkerThread'; } catch { return false; } });
    expect(threads).toHaveLength(0);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    expect(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3])).toBe(pid); // session id = its pid
    if (existsSync(`/proc/${pid}/autogroup`)) expect(readFileSync(`/proc/${pid}/autogroup`, 'utf8')).toMatch(/ nice 9\n?$/);
    const metrics = (await c.get('/metrics')).body as string;
    expect(metrics).toMatch(/orderflow_funding_decisions_total\{modelVersion="cashflow-mc-1\.0",decision="rejected"\} [1-9]/);
    expect(metrics).toMatch(/orderflow_funding_risk_pool\{what="threads"\} 1/);
  });

  it('a child that dies is started again, and scoring carries on', async () => {
    const [pid] = children();
    process.kill(pid!, 'SIGKILL');
    const next = await eventually(() => children().find((p) => p !== pid && alive(p)), { timeoutMs: 30_000, what: 'a new scoring process' });
    expect(next).toBeDefined();
    const id = (await c.post('/api/funding/applications', rejectedBody())).body.id as string;
    await waitForStatus(c.get, id, 'rejected', 120_000);
  });

  it('stopping this process stops the child', async () => {
    const [pid] = children();
    await c.close();
    await eventually(() => !alive(pid!), { timeoutMs: 30_000, what: 'the scoring process gone' });
    c = undefined as never;
  });
});
