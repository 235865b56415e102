import { defineEntity, p } from '@mikro-orm/core';

export const Product = defineEntity({
  name: 'Product',
  schema: 'catalog',
  tableName: 'products',
  properties: {
    sku: p.text().primary(),
    name: p.text(),
    description: p.text().default(''),
    priceCents: p.integer(),
    currency: p.text(),
    createdAt: p.datetime().defaultRaw('now()'),
    // Name weighs more than description in the ranking. The SKU is searchable whole and by its
    // parts: the parser reads the '-12345' of 'SKU-12345' as a signed integer, which a search
    // for '12345' would miss, so the parts go in again split on punctuation.
    // Written as Postgres prints it back, so the schema diff sees no change.
    search: p.type('tsvector').columnType('tsvector').nullable().lazy().generated(
      `((setweight(to_tsvector('simple'::regconfig, ((sku || ' '::text) || regexp_replace(sku, '[^[:alnum:]]+'::text, ' '::text, 'g'::text))), 'A'::"char") || setweight(to_tsvector('english'::regconfig, name), 'A'::"char")) || setweight(to_tsvector('english'::regconfig, description), 'B'::"char")) stored`),
  },
  indexes: [{ name: 'products_search', properties: ['search'], type: 'gin' }],
  checks: [{ name: 'products_price_cents_check', expression: 'price_cents >= 0' }],
});

export const entities = [Product];

export { migrations } from './migrations/index.ts';
