import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../testing/index.ts';
import { scoreApplication, type RiskInput, type RiskResult } from './risk-model.ts';
import {
  RiskPoolBusyError,
  RiskScoringError,
  RiskWorkerCrashedError,
  createRiskPool,
  sampleRiskInput,
  type RiskPool,
} from './risk-pool.ts';

function withoutCpu(r: RiskResult): Omit<RiskResult, 'cpuMs'> {
  const { cpuMs: _cpu, ...rest } = r;
  return rest;
}

describe('createRiskPool', () => {
  let pool: RiskPool;
  beforeAll(() => {
    pool = createRiskPool({ threads: 2 });
  });
  afterAll(async () => {
    await pool.close();
  });

  it('scores concurrent tasks in worker threads, with the same results as in-thread', async () => {
    const inputs = Array.from({ length: 8 }, (_, i) => sampleRiskInput(i));
    const results = await Promise.all(inputs.map((input) => pool.score(input)));
    results.forEach((r, i) => {
      expect(withoutCpu(r)).toEqual(withoutCpu(scoreApplication(inputs[i]!)));
      expect(r.cpuMs).toBeGreaterThan(0);
    });
    const stats = pool.stats();
    expect(stats.threads).toBe(2);
    expect(stats.completed).toBeGreaterThanOrEqual(8);
    expect(stats.runTimeP50).toBeGreaterThan(0);
    expect(stats.utilization).toBeGreaterThan(0);
    expect(stats.utilization).toBeLessThanOrEqual(1);
  });

  it("debugCrash:'throw' rejects only that task", async () => {
    const settled = await Promise.allSettled([
      pool.score(sampleRiskInput(1)),
      pool.score({ ...sampleRiskInput(2), debugCrash: 'throw' }),
      pool.score(sampleRiskInput(3)),
    ]);
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const err = (settled[1] as PromiseRejectedResult).reason;
    expect(err).toBeInstanceOf(RiskScoringError);
    expect(err.invalidInput).toBe(false);
    expect(err.message).toMatch(/debugCrash=throw/);
  });

  it("debugCrash:'exit' rejects only that task, and the pool replaces the thread and keeps serving", async () => {
    const crashedBefore = pool.stats().crashed;
    const settled = await Promise.allSettled([
      pool.score(sampleRiskInput(4)),
      pool.score({ ...sampleRiskInput(5), debugCrash: 'exit' }),
      pool.score(sampleRiskInput(6)),
      pool.score(sampleRiskInput(7)),
    ]);
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    const err = (settled[1] as PromiseRejectedResult).reason;
    expect(err).toBeInstanceOf(RiskWorkerCrashedError);
    expect(err.exitCode).toBe(1);
    expect(err.message).toContain(sampleRiskInput(5).applicationId);
    expect(pool.stats().crashed).toBe(crashedBefore + 1);

    const after = await Promise.all(Array.from({ length: 4 }, (_, i) => pool.score(sampleRiskInput(10 + i))));
    expect(after.map((r) => r.modelVersion)).toEqual(Array(4).fill(after[0]!.modelVersion));
    await eventually(() => pool.stats().liveThreads === 2, { what: 'a replacement thread', timeoutMs: 10_000 });
  });

  it('a task held behind one that crashes its thread is run again, not failed', async () => {
    const one = createRiskPool({ threads: 1 });
    try {
      // One thread: the second task waits in its hand while the first crashes it.
      const settled = await Promise.allSettled([
        one.score({ ...sampleRiskInput(20), debugCrash: 'exit' }),
        one.score(sampleRiskInput(21)),
        one.score(sampleRiskInput(22)),
      ]);
      expect(settled.map((s) => s.status)).toEqual(['rejected', 'fulfilled', 'fulfilled']);
      expect((settled[0] as PromiseRejectedResult).reason).toBeInstanceOf(RiskWorkerCrashedError);
      expect(one.stats().crashed).toBe(1);
    } finally {
      await one.close();
    }
  });

  it('fails only the task that crashed its thread, wherever it falls among tasks held and answered', async () => {
    // Two threads, eight tasks, the crashing one at each place in turn: the thread also held
    // the next task, and the answer of the one before can lose the race with the exit.
    for (const at of [2, 3, 4, 5]) {
      const two = createRiskPool({ threads: 2 });
      try {
        const settled = await Promise.allSettled(Array.from({ length: 8 }, (_, i) =>
          two.score(i === at ? { ...sampleRiskInput(i), debugCrash: 'exit' } : sampleRiskInput(40 + 10 * at + i))));
        expect(settled.map((s) => s.status === 'fulfilled')).toEqual(Array.from({ length: 8 }, (_, i) => i !== at));
        expect((settled[at] as PromiseRejectedResult).reason).toBeInstanceOf(RiskWorkerCrashedError);
      } finally {
        await two.close();
      }
    }
  });

  it('survives several crashes in a row', async () => {
    for (let i = 0; i < 3; i++) {
      await expect(pool.score({ ...sampleRiskInput(i), debugCrash: 'exit' })).rejects.toBeInstanceOf(RiskWorkerCrashedError);
    }
    await expect(pool.score(sampleRiskInput(20))).resolves.toMatchObject({ simulations: expect.any(Number) });
  });

  it('marks input the model refuses as invalid', async () => {
    const bad: RiskInput = { ...sampleRiskInput(1), termMonths: 0 };
    const err = await pool.score(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RiskScoringError);
    expect((err as RiskScoringError).invalidInput).toBe(true);
  });

  it('rejects an aborted task with AbortError and keeps serving', async () => {
    const controller = new AbortController();
    const pending = pool.score(sampleRiskInput(30), { signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    await expect(pool.score(sampleRiskInput(31))).resolves.toMatchObject({ simulations: expect.any(Number) });
  });
});

describe('createRiskPool with maxQueue', () => {
  it('sheds load beyond the queue with RiskPoolBusyError', async () => {
    const pool = createRiskPool({ threads: 1, maxQueue: 1 });
    try {
      const settled = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => pool.score(sampleRiskInput(i))));
      const busy = settled.filter((s) => s.status === 'rejected' && s.reason instanceof RiskPoolBusyError);
      expect(busy.length).toBeGreaterThan(0);
      expect(settled.some((s) => s.status === 'fulfilled')).toBe(true);
      expect(busy.length + settled.filter((s) => s.status === 'fulfilled').length).toBe(5);
    } finally {
      await pool.close();
    }
  });
});

describe('createRiskPool with niceIncrement', () => {
  // nice(2) is per thread on Linux only; elsewhere the option is ignored.
  it.skipIf(process.platform !== 'linux')('runs every thread, a crash replacement included, that much below the calling thread', async () => {
    const { readdirSync, readFileSync } = await import('node:fs');
    const { getPriority } = await import('node:os');
    const callerNice = getPriority(0);
    // Worker threads of this process at a nice no other pool here uses.
    const nicedThreads = () => readdirSync('/proc/self/task').filter((t) => {
      try { return readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() === 'WorkerThread' && getPriority(Number(t)) === callerNice + 7; } catch { return false; }
    });
    const pool = createRiskPool({ threads: 2, niceIncrement: 7 });
    try {
      await Promise.all(Array.from({ length: 4 }, (_, i) => pool.score(sampleRiskInput(i))));
      await eventually(() => nicedThreads().length === 2, { what: 'two threads at nice +7', timeoutMs: 10_000 });
      const before = new Set(nicedThreads());
      await expect(pool.score({ ...sampleRiskInput(1), debugCrash: 'exit' })).rejects.toBeInstanceOf(RiskWorkerCrashedError);
      await pool.score(sampleRiskInput(2));
      await eventually(() => { const now = nicedThreads(); return now.length === 2 && now.some((t) => !before.has(t)); }, { what: 'the replacement at nice +7', timeoutMs: 10_000 });
      // The calling thread (here the event loop) keeps its priority.
      expect(getPriority(0)).toBe(callerNice);
    } finally {
      await pool.close();
    }
  });
});

describe('createRiskPool lanes', () => {
  it('runs a high task before every normal one still waiting', async () => {
    const pool = createRiskPool({ threads: 1 });
    try {
      const order: string[] = [];
      const run = (name: string, i: number, lane: 'normal' | 'high') => pool.score(sampleRiskInput(i, 6), { lane }).then(() => { order.push(name); });
      const normals = Array.from({ length: 8 }, (_, i) => run(`n${i}`, i, 'normal'));
      expect(pool.stats().queueSize).toBe(6); // n0 runs, n1 waits in the thread's hand, six wait here
      const high = run('h', 100, 'high');
      expect(pool.stats().queuedHigh).toBe(1);
      await Promise.all([...normals, high]);
      // n0 was running and n1 next in the thread's hand; the high one goes next, ahead of n2..n7.
      expect(order).toEqual(['n0', 'n1', 'h', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7']);
    } finally {
      await pool.close();
    }
  });

  it('keeps reserved threads for high tasks: normal ones never take them', async () => {
    const pool = createRiskPool({ threads: 2, reservedForHigh: 1 });
    try {
      const normals = Array.from({ length: 4 }, (_, i) => pool.score(sampleRiskInput(i, 6)));
      // One normal runs, three wait although a thread is free.
      expect(pool.stats()).toMatchObject({ reservedForHigh: 1, queueSize: 3, queuedHigh: 0 });
      const high = pool.score(sampleRiskInput(50, 6), { lane: 'high' });
      // It takes the reserved thread at once.
      expect(pool.stats()).toMatchObject({ queueSize: 3, queuedHigh: 0 });
      await Promise.all([...normals, high]);
    } finally {
      await pool.close();
    }
  });

  it('a task aborted while waiting leaves the queue without running', async () => {
    const pool = createRiskPool({ threads: 1 });
    try {
      const first = pool.score(sampleRiskInput(1, 6));
      const ac = new AbortController();
      const waiting = pool.score(sampleRiskInput(2, 6), { signal: ac.signal });
      ac.abort();
      await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
      await first;
      expect(pool.stats().completed).toBe(1);
    } finally {
      await pool.close();
    }
  });
});
