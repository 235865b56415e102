// The kit's HTTP layer, one concern per file under http/; this module gathers what services import.
export { createApp, type App, type AppEnv, type Readiness } from './http/app.ts';
export { admission, loopLagMeter, type AdmissionOptions, type ShedReason } from './http/admission.ts';
export { bodyLimit, MAX_BODY_BYTES } from './http/body-limit.ts';
export { cors } from './http/cors.ts';
export { CONTENT_SECURITY_POLICY, secureHeaders } from './http/secure-headers.ts';
export { answerMalformedRequests, errorBody, HttpError, isUnavailable, onError, type ErrorDetail } from './http/errors.ts';
export { idempotency, IdempotencyKeyTaken, type IdempotencyClaim } from './http/idempotency.ts';
export { jsonOnly } from './http/json-only.ts';
export { requestId } from './http/request-id.ts';
export { readJson, unstorableText, validate } from './http/validate.ts';
export {
  addressKey, clientAddress, createLimitShare, createRateLimiter, RATE_LIMIT_MEMBERS_BUCKET, SHARE_UNITS,
  type LimitShare, type RateLimitConfig, type RateLimiterDeps, type ShareSource,
} from './http/rate-limit.ts';
export {
  allowedMethods, createRouteTable, createRoutes, notFoundOrNotAllowed,
  type Access, type ApiEnv, type BodySpec, type HttpMethod, type ResponseSpec, type RouteDef, type RouteEntry, type RouteInput, type Routes, type RouteTable, type MountDef,
} from './http/route.ts';
