import { describe, expect, it } from 'vitest';
import { createBatcher } from './batcher.ts';

// A run the test finishes by hand: each call waits until release() (or fail()).
function gatedRun(decide: (input: number) => number | Error = (i) => i * 10) {
  const calls: { inputs: number[]; release: () => void; fail: (err: Error) => void }[] = [];
  const run = (inputs: number[]) => new Promise<number[]>((resolve, reject) => {
    calls.push({
      inputs,
      release: () => {
        const out = inputs.map(decide);
        const bad = out.find((o) => o instanceof Error);
        if (bad) reject(bad); else resolve(out as number[]);
      },
      fail: reject,
    });
  });
  return { run, calls };
}
const tick = () => new Promise((r) => setImmediate(r));

describe('createBatcher without maxWaitMs (HTTP writes)', () => {
  it('sends a lone input at once, and what arrives meanwhile in the next run, up to maxSize', async () => {
    const { run, calls } = gatedRun();
    const write = createBatcher(run, { maxSize: 3 });
    const first = write(1);
    // No timer, no tick: the statement is on its way.
    expect(calls.map((c) => c.inputs)).toEqual([[1]]);
    const later = [2, 3, 4, 5].map((i) => write(i));
    await tick();
    expect(calls).toHaveLength(1);
    calls[0]!.release();
    expect(await first).toBe(10);
    await tick();
    expect(calls.map((c) => c.inputs)).toEqual([[1], [2, 3, 4]]);
    calls[1]!.release();
    await tick();
    expect(calls.map((c) => c.inputs)).toEqual([[1], [2, 3, 4], [5]]);
    calls[2]!.release();
    expect(await Promise.all(later)).toEqual([20, 30, 40, 50]);
  });

  it('keeps up to maxConcurrent runs in flight', async () => {
    const { run, calls } = gatedRun();
    const write = createBatcher(run, { maxSize: 10, maxConcurrent: 2 });
    const all = [1, 2, 3, 4].map((i) => write(i));
    expect(calls.map((c) => c.inputs)).toEqual([[1], [2]]);
    calls[1]!.release();
    await tick();
    expect(calls.map((c) => c.inputs)).toEqual([[1], [2], [3, 4]]);
    calls[0]!.release();
    calls[2]!.release();
    expect(await Promise.all(all)).toEqual([10, 20, 30, 40]);
  });

  it('retries a failed batch input by input, all at once with isolate: parallel, and fails only the bad one', async () => {
    const bad = new Error('input 3 is bad');
    const { run, calls } = gatedRun((i) => (i === 3 ? bad : i * 10));
    const write = createBatcher(run, { maxSize: 10, isolate: 'parallel' });
    const first = write(1);
    const rest = [2, 3, 4].map((i) => write(i).then((v) => v, (e: unknown) => e));
    calls[0]!.release();
    await first;
    await tick();
    calls[1]!.release(); // [2, 3, 4] fails as a whole
    await tick();
    expect(calls.slice(2).map((c) => c.inputs)).toEqual([[2], [3], [4]]);
    for (const c of calls.slice(2)) c.release();
    expect(await Promise.all(rest)).toEqual([20, bad, 40]);
  });
});

describe('createBatcher with maxWaitMs (consumers)', () => {
  it('waits for company, and retries a failed batch one input after another', async () => {
    const bad = new Error('bad');
    const { run, calls } = gatedRun((i) => (i === 2 ? bad : i));
    const write = createBatcher(run, { maxSize: 10, maxWaitMs: 5 });
    const all = [1, 2, 3].map((i) => write(i).then((v) => v, (e: unknown) => e));
    expect(calls).toHaveLength(0);
    await new Promise((r) => setTimeout(r, 20));
    expect(calls.map((c) => c.inputs)).toEqual([[1, 2, 3]]);
    calls[0]!.release();
    await tick();
    // Serial: the next single starts only when the one before it ended.
    expect(calls.slice(1).map((c) => c.inputs)).toEqual([[1]]);
    calls[1]!.release();
    await tick();
    expect(calls.slice(1).map((c) => c.inputs)).toEqual([[1], [2]]);
    calls[2]!.release();
    await tick();
    calls[3]!.release();
    expect(await Promise.all(all)).toEqual([1, bad, 3]);
  });
});
