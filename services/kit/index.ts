// The kit's public face: what services import. Everything else in services/kit (the
// pull loop, the DLQ mover, the outbox relay, provisioning, the runtime's boot) is the
// kit's own business and may change shape without a service noticing.
// `import { startWorker, NonRetryableError, readJson, type Deps } from '../kit/index.ts'`
// Test support stays apart (services/testing/), so production code never loads it.

// Delivery: one core, the two shapes services start most, and the one failure decision.
export {
  backoff, InvalidMessageError, parseMessage, settle, startConsumer,
  type BatchItem, type BatchOptions, type BatchResult, type DeliveryContext, type EachOptions, type HandlerContext,
  type RetryPolicy, type RunningConsumer, type SettleContext, type Settled,
} from './delivery.ts';
export { parseRetryAfter } from './retry.ts';
export { createBreaker, type Breaker, type BreakerMetrics, type BreakerOptions } from './breaker.ts';
export { createBatcher, type Batcher, type BatcherOptions } from './batcher.ts';
export { startWorker, type ConsumerOptions, type Worker, type WorkerOptions } from './worker.ts';
export { startBatchWorker, type BatchWorker, type BatchWorkerOptions } from './batch-worker.ts';

export {
  clip, ConfigError, HttpError, NonRetryableError, notFound, ProvisioningError, RetryLaterError, type ErrorDetail,
} from './errors.ts';
export {
  allowedMethods, errorBody, idempotency, IdempotencyKeyTaken, isUnavailable, readJson, unstorableText, validate, type App, type AppEnv, type IdempotencyClaim,
  type MountDef, type Access, type ApiEnv, type BodySpec, type HttpMethod, type ResponseSpec, type RouteDef, type RouteEntry, type RouteInput, type Routes, type RouteTable,
} from './http.ts';
export { createRateLimiter, type RateLimitConfig, type RateLimiterDeps, type ShareSource } from './http.ts';
export {
  createVerifier, hasAccess, InvalidTokenError, ownerFilter, remoteJwks, requireAccess, requireAuth, requireRole, requireScope,
  type AuthEnv, type Principal, type Verifier,
} from './auth.ts';
export { createSealer, looksSealed, paymentTokenSealer, type Sealer } from './seal.ts';
export { enqueue, OUTBOX_ROWS, type CommittedOutboxRow, type OutboxMessage } from './outbox.ts';
export {
  activeTrace, carryHeaders, createTracing, failed, injectTrace, SpanKind, SpanStatusCode, traceFrom, traceIds, tracedFetch, tracingOff, withTrace,
  type Span, type Trace, type Tracing,
} from './tracing.ts';
export { int, port, readConfig, url, type BaseConfig } from './config.ts';
export { createLogger, type Logger } from './log.ts';
export { countedReads, createMetrics, timedSend, type Metrics } from './metrics.ts';
export { H, type Nats } from './nats.ts';
export { rawQuery, sqlMigration, type EntityManager, type MigrationDef, type MikroORM } from './db.ts';
export { readSpecs, STREAMS_DIR, type ConsumerSpec, type StreamSpec } from './provision.ts';
export { createDlqAdmin, DLQ_STREAM, ADVISORY_STREAM, DlqHeaders, type DlqAdmin, type DlqContracts, type DlqEntry, type DlqFilter, type DlqReason } from './dlq.ts';
export {
  createGatewayClient, GatewayAmbiguousError, GatewayError, GatewayRateLimitedError, GatewayRejectedError, GatewayTransientError,
  GatewayUnavailableError,
  type BreakerState, type ChargeResult, type GatewayBreakerOptions, type GatewayCharge, type GatewayClient, type GatewayClientOptions,
  type GatewayPayout, type GatewayRefund, type PayoutResult, type RefundResult,
} from './gateway-client.ts';
export {
  bucketOf, FLAGS_BUCKET, FlagConflictError, FlagKey, FlagSpec, variantOf,
  type Flag, type Flags, type FlagSeed, type FlagStore, type StoredFlag, type Variant,
} from './flags.ts';
export { defineModule, type ServiceModule } from './modules.ts';
export { createRateShare, type RateShare, type RateShareLog, type RateShareOptions } from './rate-share.ts';
export { instanceId } from './runtime.ts';
export { acceptWebSocket, type LiveSocket, type SocketSession } from './websocket.ts';
export type { Deps, Env, RelayHook, Running } from './service.ts';
