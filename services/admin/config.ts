// Admin's settings (ADMIN_*), validated at boot. The console signs people in through
// identity's API and reads its signing keys from there (the contract's IDENTITY_* names).
import { z } from 'zod';
import { int, readConfig, url, type Env } from '../kit/index.ts';

const schema = z.object({
  /**
   * Where the console reaches identity (sign-in, refresh, logout, /api/users/me, the JWKS) and
   * funding (review decisions) over HTTP when they run in other processes (Kubernetes). Unset,
   * this process answers itself, in-process (npm start, where every target runs together).
   */
  IDENTITY_URL: url(['http', 'https']),
  FUNDING_URL: url(['http', 'https']),
  IDENTITY_ISSUER: z.string().min(1).default('orderflow-identity'),
  IDENTITY_AUDIENCE: z.string().min(1).default('orderflow'),
  /** How often the console's live views read what changed (one query per view type, shared by every open page). */
  ADMIN_CONSOLE_LIVE_MS: int(1000, 100, 60_000),
});

export type AdminConfig = z.infer<typeof schema>;

/** `const config = loadAdminConfig(deps.env)` */
export function loadAdminConfig(env: Env): AdminConfig {
  return readConfig(schema, env);
}
