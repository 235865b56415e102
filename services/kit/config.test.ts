import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { int, loadBaseConfig, readConfig, url } from './config.ts';
import { ConfigError } from './errors.ts';
import { resolveTargets } from './runtime.ts';

describe('config', () => {
  it('has working local defaults', () => {
    const c = loadBaseConfig({});
    expect(c).toMatchObject({ NATS_URL: 'nats://127.0.0.1:4222', DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/orderflow', PORT: 8080, TARGET: 'all', LOG_LEVEL: 'info' });
  });
  it('names every bad variable in one error', () => {
    expect(() => loadBaseConfig({ PORT: 'eighty', DATABASE_URL: 'mysql://x', LOG_LEVEL: 'loud' })).toThrow(ConfigError);
    try {
      loadBaseConfig({ PORT: 'eighty', DATABASE_URL: 'mysql://x', LOG_LEVEL: 'loud' });
    } catch (err) {
      expect((err as Error).message).toMatch(/PORT/);
      expect((err as Error).message).toMatch(/DATABASE_URL/);
      expect((err as Error).message).toMatch(/LOG_LEVEL/);
    }
  });
  it('reads a service schema with prefixed variables', () => {
    const s = z.object({ SVC_URL: url(['http', 'https']), SVC_N: int(3, 1, 10) });
    expect(readConfig(s, { SVC_URL: 'http://x', SVC_N: '7' })).toEqual({ SVC_URL: 'http://x', SVC_N: 7 });
    expect(() => readConfig(s, { SVC_N: '0' })).toThrow(/SVC_N/);
  });
  it('resolves TARGET', () => {
    const reg = { a: {}, b: {}, c: {} } as never;
    expect(resolveTargets('all', reg)).toEqual(['a', 'b', 'c']);
    expect(resolveTargets('c, a', reg)).toEqual(['a', 'c']);
    expect(() => resolveTargets('a,zzz', reg)).toThrow(/unknown TARGET zzz/);
  });
});
