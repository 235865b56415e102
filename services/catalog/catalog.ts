// Products and their search. Search is Postgres full text over SKU, name and
// description (a stored tsvector with a GIN index); every word of the query must
// match, each as a prefix, so "blue wid" finds "Blue widget". Pages are keyset
// pages in SKU order; the cursor is opaque to clients (base64url of the last SKU).
import type { CreateProductRequest } from '../../contracts/commerce.ts';
import type { EntityManager } from '../kit/index.ts';
import { HttpError } from '../kit/index.ts';
import { unstorableText } from '../kit/index.ts';
import { Product } from './entities.ts';

export type ProductView = { sku: string; name: string; description: string; priceCents: number; currency: string; createdAt: string };
type Row = { sku: string; name: string; description: string; price_cents: number; currency: string; created_at: Date };

const view = (r: Row): ProductView => ({
  sku: r.sku, name: r.name, description: r.description, priceCents: r.price_cents, currency: r.currency,
  createdAt: new Date(r.created_at).toISOString(),
});

/** Insert a product; null when the SKU exists. */
export async function insertProduct(em: EntityManager, p: CreateProductRequest): Promise<ProductView | null> {
  const [r] = await em.execute<Row[]>(
    `insert into catalog.products (sku, name, description, price_cents, currency) values (?, ?, ?, ?, ?)
     on conflict do nothing returning sku, name, description, price_cents, currency, created_at`,
    [p.sku, p.name, p.description, p.priceCents, p.currency]);
  return r ? view(r) : null;
}

export async function getProduct(em: EntityManager, sku: string): Promise<ProductView | null> {
  const p = await em.findOne(Product, { sku });
  return p ? view({ sku: p.sku, name: p.name, description: p.description, price_cents: p.priceCents, currency: p.currency, created_at: p.createdAt }) : null;
}

/** `toTsQuery('blue wid') // 'blue:* & wid:*'`; null when the query has no words. */
export function toTsQuery(q: string): string | null {
  const words = q.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean).slice(0, 16);
  return words.length ? words.map((w) => `${w}:*`).join(' & ') : null;
}

export const encodeCursor = (sku: string) => Buffer.from(JSON.stringify({ s: sku })).toString('base64url');
export function decodeCursor(cursor: string): string {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    // A forged cursor could carry a NUL, which Postgres refuses in a query parameter.
    if (typeof v?.s === 'string' && !unstorableText(v.s).length) return v.s;
  } catch { /* fall through */ }
  throw new HttpError(400, 'VALIDATION_FAILED', 'invalid cursor', [{ field: 'cursor', message: 'not a cursor this API returned' }]);
}

/** One page of products matching `q` (all when absent). */
export async function listProducts(em: EntityManager, o: { q?: string; limit: number; cursor?: string }): Promise<{ items: ProductView[]; nextCursor: string | null }> {
  const where: string[] = [];
  const params: unknown[] = [];
  const ts = o.q ? toTsQuery(o.q) : null;
  if (o.q && !ts) return { items: [], nextCursor: null };
  // 'simple' for the SKU words, 'english' for stems of name and description: either may match.
  if (ts) { where.push(`(search @@ to_tsquery('english', ?) or search @@ to_tsquery('simple', ?))`); params.push(ts, ts); }
  if (o.cursor) { where.push('sku > ?'); params.push(decodeCursor(o.cursor)); }
  params.push(o.limit + 1);
  const rows = await em.execute<Row[]>(
    `select sku, name, description, price_cents, currency, created_at from catalog.products
      ${where.length ? `where ${where.join(' and ')}` : ''} order by sku limit ?`, params);
  const more = rows.length > o.limit;
  const page = rows.slice(0, o.limit);
  return { items: page.map(view), nextCursor: more ? encodeCursor(page.at(-1)!.sku) : null };
}
