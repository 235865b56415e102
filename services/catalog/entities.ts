import { defineEntity, p } from '@mikro-orm/core';
import { sqlMigration } from '../kit/index.ts';

export const Product = defineEntity({
  name: 'Product',
  schema: 'catalog',
  tableName: 'products',
  properties: {
    sku: p.string().primary(),
    name: p.string(),
    description: p.text(),
    priceCents: p.integer(),
    currency: p.string(),
    createdAt: p.datetime(),
  },
});

export const entities = [Product];

export const migrations = [
  sqlMigration('catalog-0001-init', [
    'create schema if not exists catalog',
    `create table catalog.products (
       sku text primary key,
       name text not null,
       description text not null default '',
       price_cents int not null check (price_cents >= 0),
       currency text not null,
       created_at timestamptz not null default now(),
       -- Name weighs more than description in the ranking; the SKU itself is searchable as one word.
       search tsvector generated always as (
         setweight(to_tsvector('simple', sku), 'A') ||
         setweight(to_tsvector('english', name), 'A') ||
         setweight(to_tsvector('english', description), 'B')) stored)`,
    'create index products_search on catalog.products using gin (search)',
  ]),
];
