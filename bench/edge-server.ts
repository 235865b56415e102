// bench:edge's "without them" process: the runtime exactly as services/main.ts starts it,
// except that every bearer token is taken, unchecked, as one fixed customer (no signature,
// no JWKS, no token cache). Run with RATE_LIMIT_RPS=0 and RATE_LIMIT_ANON_RPS=0 (the
// limiter off), it is the same intake without token verification and the rate limiter,
// which bench:edge compares against. A bench harness only: nothing in services/ imports
// it, and no image, manifest or script starts it.
import { createLogger, type Principal } from '../services/kit/index.ts';
import { startRuntime, type VerifierFactory } from '../services/kit/runtime.ts';
import { externals, openapi, registry, sharedRoutes } from '../services/main.ts';

const principal: Principal = { sub: 'bench-customer', kind: 'user', roles: ['customer'], scopes: [] };
const unchecked: VerifierFactory = () => ({ verify: async () => principal });
const log = createLogger({ level: process.env.LOG_LEVEL ?? 'warn' });
const cluster = await startRuntime({ env: process.env, registry, externals, verifier: unchecked, openapi, log, routes: sharedRoutes });
process.on('SIGTERM', () => { cluster.stop().then(() => process.exit(0), () => process.exit(1)); });
