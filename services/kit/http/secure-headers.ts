// Security headers on every response (Hono's secureHeaders with our policy). The pages the
// cluster serves (/docs, /_dev/mail, the /admin console) load their scripts and styles from
// the same origin, so the CSP allows 'self' and no script from anywhere else, inline or eval'd.
// Inline styles stay allowed: /_dev/mail has a <style> block and Swagger UI sets style
// attributes; a style cannot run code.
import type { MiddlewareHandler } from 'hono';
import { secureHeaders as honoSecureHeaders } from 'hono/secure-headers';

/** The Content-Security-Policy every response carries. */
export const CONTENT_SECURITY_POLICY = {
  defaultSrc: ["'self'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'", "'unsafe-inline'"],
  // Swagger UI draws its icons from data: URIs.
  imgSrc: ["'self'", 'data:'],
  fontSrc: ["'self'", 'data:'],
  connectSrc: ["'self'"],
  objectSrc: ["'none'"],
  baseUri: ["'self'"],
  formAction: ["'self'"],
  frameAncestors: ["'none'"],
};

/**
 * `app.use('*', secureHeaders())`. HSTS is sent always: browsers ignore it over plain HTTP, and
 * behind the TLS Ingress it is what keeps them on HTTPS.
 */
export function secureHeaders(): MiddlewareHandler {
  return honoSecureHeaders({
    contentSecurityPolicy: CONTENT_SECURITY_POLICY,
    xFrameOptions: 'DENY',
    referrerPolicy: 'no-referrer',
    strictTransportSecurity: 'max-age=31536000; includeSubDomains',
    xContentTypeOptions: 'nosniff',
    // Same-origin by default: another site may not embed our responses (CORS calls are not affected).
    crossOriginResourcePolicy: 'same-origin',
    crossOriginOpenerPolicy: 'same-origin',
    permissionsPolicy: { camera: [], microphone: [], geolocation: [], payment: [] },
  });
}
