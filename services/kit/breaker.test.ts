import { describe, expect, it } from 'vitest';
import { createBreaker, type BreakerState } from './breaker.ts';
import { createLogger } from './log.ts';
import { createMetrics } from './metrics.ts';
import { eventually } from '../testing/servers.ts';

const log = createLogger({ level: 'silent' });

// The breaker's line of orderflow_breaker_state for one state, as a scrape shows it.
async function scraped(metrics: ReturnType<typeof createMetrics>, state: BreakerState): Promise<number | undefined> {
  const line = (await metrics.registry.metrics()).split('\n')
    .find((l) => l.startsWith('orderflow_breaker_state{') && l.includes('system="sys"') && l.includes('client="svc"') && l.includes(`state="${state}"`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('createBreaker', () => {
  it('follows opossum through open, half-open and closed, telling listeners and the metric once per change', async () => {
    const metrics = createMetrics();
    let failing = true;
    const breaker = createBreaker(async (n: number) => { if (failing) throw new Error('down'); return n * 2; }, {
      system: 'sys', log, metrics: { metrics, client: 'svc' },
      opossum: { volumeThreshold: 2, errorThresholdPercentage: 50, resetTimeout: 100 },
    });
    const seen: BreakerState[] = [];
    breaker.onStateChange((s) => seen.push(s));
    expect(await scraped(metrics, 'closed')).toBe(1);

    for (let i = 0; i < 3 && !breaker.isOpen(); i++) await breaker.fire(i).catch(() => {});
    expect([breaker.isOpen(), breaker.state(), breaker.opened()]).toEqual([true, 'open', 1]);
    expect(breaker.openedAt()).toBeGreaterThan(Date.now() - 5000);
    expect([await scraped(metrics, 'open'), await scraped(metrics, 'closed')]).toEqual([1, 0]);
    await expect(breaker.fire(1)).rejects.toMatchObject({ code: 'EOPENBREAKER' });

    await eventually(() => breaker.state() === 'halfOpen', { what: 'half-open' });
    expect(breaker.isOpen()).toBe(false);
    expect(await scraped(metrics, 'halfOpen')).toBe(1);
    failing = false;
    expect(await breaker.fire(21)).toBe(42);
    expect(breaker.state()).toBe('closed');
    expect(seen).toEqual(['open', 'halfOpen', 'closed']);
    breaker.shutdown();
  });

  it('opens on our own judgement, and keeps its defaults for options left undefined', async () => {
    const breaker = createBreaker(async () => 'ok', { system: 'sys', log, opossum: { resetTimeout: undefined, volumeThreshold: undefined } });
    expect(breaker.resetTimeoutMs).toBe(10_000);
    const seen: BreakerState[] = [];
    const off = breaker.onStateChange((s) => seen.push(s));
    breaker.open();
    expect([breaker.state(), breaker.opened(), seen]).toEqual(['open', 1, ['open']]);
    off();
    breaker.shutdown();
  });

  it('a listener that throws does not stop the others', async () => {
    const breaker = createBreaker(async () => 'ok', { system: 'sys', log });
    const seen: BreakerState[] = [];
    breaker.onStateChange(() => { throw new Error('listener bug'); });
    breaker.onStateChange((s) => seen.push(s));
    breaker.open();
    expect(seen).toEqual(['open']);
    breaker.shutdown();
  });
});
