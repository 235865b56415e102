import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ConfigError } from './errors.ts';
import { createLogger } from './log.ts';
import { createSealer, looksSealed, paymentTokenSealer, SealError } from './seal.ts';

const key = () => randomBytes(32);
const TOKEN = 'tok_visa_4242424242424242';

/** A logger whose lines land in `lines` (synchronously). */
function capture() {
  const lines: string[] = [];
  const destination = new Writable({ write(chunk, _enc, done) { lines.push(String(chunk)); done(); } });
  return { lines, log: createLogger({ level: 'trace', destination }) };
}

/** The same text with one base64url character of part `i` (0-based) flipped. */
function tamper(sealed: string, i: number): string {
  const parts = sealed.split('.');
  const p = parts[i]!;
  parts[i] = (p[0] === 'A' ? 'B' : 'A') + p.slice(1);
  return parts.join('.');
}

describe('seal and open', () => {
  it('round-trips, in the versioned format, with a fresh IV each time', () => {
    const s = createSealer([key()]);
    const a = s.seal(TOKEN);
    const b = s.seal(TOKEN);
    expect(a).toMatch(/^v1\.[\w-]+\.[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(a.split('.')[1]).toBe(s.keyId);
    expect(looksSealed(a)).toBe(true);
    expect(a).not.toContain(TOKEN);
    expect(a).not.toBe(b);
    expect(s.open(a)).toBe(TOKEN);
    expect(s.open(b)).toBe(TOKEN);
    expect(s.open(s.seal(''))).toBe('');
    expect(s.open(s.seal('ünïcødé ✓'))).toBe('ünïcødé ✓');
  });

  it('refuses a tampered value: IV, ciphertext, tag, or a relabelled key id', () => {
    const s = createSealer([key()]);
    const sealed = s.seal(TOKEN);
    for (const i of [2, 3, 4]) expect(() => s.open(tamper(sealed, i))).toThrow(SealError);
    // The key id is authenticated: the same key under another id does not open it.
    const other = createSealer([key(), key()]);
    expect(() => other.open(sealed)).toThrow(/unknown key/);
    expect(() => s.open(sealed.replace(/^v1\.[\w-]+\./, `v1.${other.keyId}.`))).toThrow(SealError);
    expect(() => s.open(`${sealed}x`)).toThrow(SealError);
    expect(() => s.open(TOKEN)).toThrow(/not a sealed value/);
    expect(looksSealed(TOKEN)).toBe(false);
  });

  it('refuses a value sealed with another key, and says so without the value or the key', () => {
    const k = key();
    const sealed = createSealer([key()]).seal(TOKEN);
    const err = (() => { try { createSealer([k]).open(sealed); } catch (e) { return e as Error; } })();
    expect(err).toBeInstanceOf(SealError);
    expect(err!.message).not.toContain(TOKEN);
    expect(err!.message).not.toContain(sealed.split('.')[3]);
    expect(err!.message).not.toContain(k.toString('base64'));
  });

  it('rotates: the first key seals, every listed key opens', () => {
    const [oldKey, newKey] = [key(), key()];
    const before = createSealer([oldKey]);
    const sealedOld = before.seal(TOKEN);
    const after = createSealer([newKey, oldKey]);
    const sealedNew = after.seal(TOKEN);
    expect(sealedNew.split('.')[1]).toBe(createSealer([newKey]).keyId);
    expect(after.open(sealedOld)).toBe(TOKEN);
    expect(after.open(sealedNew)).toBe(TOKEN);
    // A process still on the old key alone cannot open what the new key sealed.
    expect(() => before.open(sealedNew)).toThrow(SealError);
  });
});

describe('paymentTokenSealer (PAYMENT_TOKEN_KEY)', () => {
  it('reads a comma-separated list of base64 keys: the first seals, all open', () => {
    const [a, b] = [key(), key()];
    const { lines, log } = capture();
    const s = paymentTokenSealer({ PAYMENT_TOKEN_KEY: `${a.toString('base64')}, ${b.toString('base64')}` }, log);
    expect(s.keyId).toBe(createSealer([a]).keyId);
    expect(s.open(createSealer([b]).seal(TOKEN))).toBe(TOKEN);
    expect(lines).toEqual([]);
  });

  it('unset in development: the development key, with one warning that never shows a key', () => {
    const { lines, log } = capture();
    const s = paymentTokenSealer({}, log);
    expect(paymentTokenSealer({ ORDERFLOW_ENV: 'development' }, createLogger({ level: 'silent' })).open(s.seal(TOKEN))).toBe(TOKEN);
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!);
    expect(line).toMatchObject({ level: 'warn', keyId: s.keyId });
    expect(line.msg).toMatch(/PAYMENT_TOKEN_KEY unset.*DEVELOPMENT key/);
    expect(lines[0]).not.toMatch(/[A-Za-z0-9+/]{43}=/);
  });

  it('unset in production: start-up fails naming PAYMENT_TOKEN_KEY', () => {
    expect(() => paymentTokenSealer({ ORDERFLOW_ENV: 'production' }, createLogger({ level: 'silent' }))).toThrow(ConfigError);
    expect(() => paymentTokenSealer({ ORDERFLOW_ENV: 'production', PAYMENT_TOKEN_KEY: '' }, createLogger({ level: 'silent' }))).toThrow(/PAYMENT_TOKEN_KEY/);
    expect(paymentTokenSealer({ ORDERFLOW_ENV: 'production', PAYMENT_TOKEN_KEY: key().toString('base64') }, createLogger({ level: 'silent' })).keyId).toMatch(/^[\w-]{10}$/);
  });

  it('a malformed key is a ConfigError naming the variable and the entry, never echoing it', () => {
    const good = key().toString('base64');
    const short = randomBytes(16).toString('base64');
    let err: Error | undefined;
    try { paymentTokenSealer({ PAYMENT_TOKEN_KEY: `${good},${short}` }, createLogger({ level: 'silent' })); } catch (e) { err = e as Error; }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.message).toMatch(/PAYMENT_TOKEN_KEY: entry 2 must be 32 random bytes/);
    expect(err!.message).not.toContain(good);
    expect(err!.message).not.toContain(short);
  });
});

describe('IVs', () => {
  it('never repeat across many seals (they are cut from a pooled random buffer), and each seal opens', () => {
    const s = createSealer([key()]);
    const ivs = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const sealed = s.seal(`tok_${i}`);
      ivs.add(sealed.split('.')[2]!);
      expect(s.open(sealed)).toBe(`tok_${i}`);
    }
    expect(ivs.size).toBe(2000);
  });
});
