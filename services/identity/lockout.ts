// Per-account login throttling (CONTRACTS.md): LOGIN_MAX_ATTEMPTS failures in a fixed
// 15-minute window, then every attempt is refused until the window ends, whatever the
// password and from any address. Counted in Postgres so every replica sees one count;
// unknown emails are counted the same way, so the limit reveals nothing about who exists.
import type { Logger, MikroORM } from '../kit/index.ts';
import { normalizeEmail } from './users.ts';

export type AttemptResult<T> = { limited: true; retryAfterS: number } | { limited: false; value: T | null };

/**
 * `attempt(email, check)` runs one password check as one counted attempt.
 *
 * The attempt is counted BEFORE `check` runs, in one atomic upsert: that is what keeps
 * concurrent guesses (on any number of replicas) from slipping past the limit, since each
 * takes its slot before any password is compared, so at most LOGIN_MAX_ATTEMPTS checks run
 * per window. What is counted is then settled by the verdict:
 *  - `check` answers null (wrong password, unknown email): the slot stays used.
 *  - `check` answers a value (right password): the count is cleared.
 *  - `check` throws (a pool timeout, Postgres gone), or clearing does: no verdict reached the
 *    client, who learned nothing, so the slot is given back (refunded). Without this a load
 *    run's 503s locked the development admin out. The refund targets the window the slot was
 *    taken in: if that window has since ended, the new one never held this attempt.
 * A refund that fails too (the database is likely still down) leaves the attempt counted:
 * the safe side. `check` must not throw after it has compared the password.
 */
export function createLockout({ orm, maxAttempts, windowS, log }: { orm: MikroORM; maxAttempts: number; windowS: number; log?: Logger }) {
  const refund = async (email: string, window: string) => {
    await orm.em.fork().execute(
      `update identity.login_attempts set failures = failures - 1 where email = ? and window_start = ?::timestamptz and failures > 0`,
      [email, window]);
  };
  return {
    async attempt<T>(email: string, check: () => Promise<T | null>): Promise<AttemptResult<T>> {
      const key = normalizeEmail(email);
      const [r] = await orm.em.fork().execute<{ failures: number; reset_s: number; window: string }[]>(
        `insert into identity.login_attempts as a (email, window_start, failures) values (?, now(), 1)
         on conflict (email) do update set
           failures = case when a.window_start <= now() - make_interval(secs => ?) then 1 else a.failures + 1 end,
           window_start = case when a.window_start <= now() - make_interval(secs => ?) then now() else a.window_start end
         returning failures, extract(epoch from window_start + make_interval(secs => ?) - now())::float8 as reset_s, window_start::text as window`,
        [key, windowS, windowS, windowS]);
      // A refused attempt stays counted: it is a verdict (429), and refunding it would let a flood of them reopen the account.
      if (r!.failures > maxAttempts) return { limited: true, retryAfterS: Math.max(1, Math.ceil(r!.reset_s)) };
      try {
        const value = await check();
        if (value === null) return { limited: false, value: null };
        await orm.em.fork().execute(`delete from identity.login_attempts where email = ?`, [key]);
        return { limited: false, value };
      } catch (err) {
        await refund(key, r!.window).catch((refundErr: unknown) => log?.warn({ err: String(refundErr) }, 'login attempt could not be refunded after an error: it stays counted'));
        throw err;
      }
    },
  };
}
