// Per-account login throttling (CONTRACTS.md): LOGIN_MAX_ATTEMPTS failures in a fixed
// 15-minute window, then every attempt is refused until the window ends, whatever the
// password and from any address. Counted in Postgres so every replica sees one count;
// unknown emails are counted the same way, so the limit reveals nothing about who exists.
import type { MikroORM } from '../kit/index.ts';
import { normalizeEmail } from './users.ts';

export type AttemptClaim = { allowed: true } | { allowed: false; retryAfterS: number };

/**
 * Count this attempt before the password is checked (so concurrent guesses on many replicas
 * cannot slip past the limit); `succeeded` clears the count.
 */
export function createLockout({ orm, maxAttempts, windowS }: { orm: MikroORM; maxAttempts: number; windowS: number }) {
  return {
    async claim(email: string): Promise<AttemptClaim> {
      const [r] = await orm.em.fork().execute<{ failures: number; reset_s: number }[]>(
        `insert into identity.login_attempts as a (email, window_start, failures) values (?, now(), 1)
         on conflict (email) do update set
           failures = case when a.window_start <= now() - make_interval(secs => ?) then 1 else a.failures + 1 end,
           window_start = case when a.window_start <= now() - make_interval(secs => ?) then now() else a.window_start end
         returning failures, extract(epoch from window_start + make_interval(secs => ?) - now())::float8 as reset_s`,
        [normalizeEmail(email), windowS, windowS, windowS]);
      return r!.failures > maxAttempts ? { allowed: false, retryAfterS: Math.max(1, Math.ceil(r!.reset_s)) } : { allowed: true };
    },
    async succeeded(email: string): Promise<void> {
      await orm.em.fork().execute(`delete from identity.login_attempts where email = ?`, [normalizeEmail(email)]);
    },
  };
}
