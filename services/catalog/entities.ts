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
    // Name weighs more than description in the ranking; the SKU itself is searchable as one word.
    // Written as Postgres prints it back, so the schema diff sees no change.
    search: p.type('tsvector').columnType('tsvector').nullable().lazy().generated(
      `((setweight(to_tsvector('simple'::regconfig, sku), 'A'::"char") || setweight(to_tsvector('english'::regconfig, name), 'A'::"char")) || setweight(to_tsvector('english'::regconfig, description), 'B'::"char")) stored`),
  },
  indexes: [{ name: 'products_search', properties: ['search'], type: 'gin' }],
  checks: [{ name: 'products_price_cents_check', expression: 'price_cents >= 0' }],
});

export const entities = [Product];

export { migrations } from './migrations/index.ts';
