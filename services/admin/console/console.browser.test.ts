// The operator console in a real browser (Debian's chromium, driven by playwright-core;
// never a downloaded browser), found by the labels and roles a person uses: sign in, watch
// an order appear and reach SHIPPED without a reload, find a lending item's dead letter by
// its loan id, fix and redrive it and watch the order's counts move, a bulk redrive whose
// dry run count is what it then redrives, a reviewer's approval and the payout that
// follows, a decision made with the keyboard alone, and a customer refused. It takes a
// screenshot of each view: into CONSOLE_SCREENSHOTS_DIR when set (docs/console/ holds the
// README's, made with CONSOLE_SCREENSHOTS_DIR=docs/console), else a temporary folder, so
// an ordinary run leaves the working tree as it was.
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pendingReviewBody, waitForStatus } from '../../funding/test-fixtures.ts';
import { startT24Simulator, type RunningT24Simulator } from '../../simulators/t24.ts';
import { eventually, startCommerce, uid, type Commerce } from '../../testing/index.ts';
import { account, ADMIN, CONSOLE_ENV, PASSWORD } from './test-support.ts';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = `${process.env.CONSOLE_SCREENSHOTS_DIR ? resolve(process.env.CONSOLE_SCREENSHOTS_DIR) : join(tmpdir(), 'orderflow-console-screenshots')}/`;

let k: Commerce;
let t24: RunningT24Simulator;
let browser: Browser;
let reviewer: { email: string; password: string };
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  t24 = await startT24Simulator({ port: 0, maxRps: 400, seed: 7 });
  k = await startCommerce({ T24_URL: t24.url, T24_MAX_RPS: '400', LENDING_BATCH_SIZE: '50', ...CONSOLE_ENV });
  await k.product('CONSOLE-CUP', 1000);
  reviewer = await account(k.c, `reviewer-${randomUUID().slice(0, 8)}@example.com`, ['reviewer']);
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, 120_000);

afterAll(async () => {
  for (const ctx of contexts) await ctx.close().catch(() => {});
  await browser?.close();
  await k?.close();
  await t24?.close();
});

async function open(): Promise<Page> {
  const ctx = await browser.newContext({ baseURL: k.c.url, viewport: { width: 1280, height: 900 } });
  contexts.push(ctx);
  const page = await ctx.newPage();
  page.setDefaultTimeout(30_000);
  return page;
}

async function signIn(page: Page, who: { email: string; password: string }) {
  await page.goto('/admin');
  await expect.poll(() => page.url(), { timeout: 30_000 }).toContain('/admin/login');
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

const shot = async (page: Page, name: string) => { await page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true }); };

/** A value the page keeps until it is reloaded or left: proof that what changed came without a reload. */
const mark = async (page: Page) => { await page.evaluate(() => { (window as unknown as { mark: number }).mark = 42; }); };
const stillMarked = async (page: Page) => await page.evaluate(() => (window as unknown as { mark?: number }).mark === 42);

describe.skipIf(!existsSync(CHROMIUM))('the console in Chromium', () => {
  let admin: Page;

  it('signs an admin in through the form', async () => {
    const page = await open();
    await page.goto('/admin/login');
    await shot(page, 'login');
    await signIn(page, ADMIN);
    await expect.poll(() => page.url(), { timeout: 30_000 }).toMatch(/\/admin\/orders$/);
    expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('Orders');
    admin = page;
  }, 60_000);

  it('shows an order placed through the API appear and reach SHIPPED without a reload', async () => {
    await admin.goto('/admin/orders');
    await admin.getByText('Live updates on.').first().waitFor();
    await mark(admin);
    const orderId = uid('CONSOLE');
    const placed = await k.order([{ sku: 'CONSOLE-CUP', quantity: 1 }], { orderId });
    expect(placed.status).toBe(202);
    const row = admin.getByRole('row').filter({ hasText: orderId });
    await row.waitFor();
    await expect.poll(async () => await row.textContent(), { timeout: 60_000 }).toContain('SHIPPED');
    expect(await stillMarked(admin)).toBe(true);
    await shot(admin, 'orders');

    await row.getByRole('link', { name: orderId }).click();
    await admin.getByRole('heading', { name: `Order ${orderId}` }).waitFor();
    for (const h of ['Saga timeline', 'Charges and refunds', 'Mails and text messages sent', 'Dead letters']) await admin.getByRole('heading', { name: h }).waitFor();
    await expect.poll(async () => await admin.getByRole('table', { name: /Mails the SMTP server accepted/ }).textContent(), { timeout: 30_000 }).toContain('ana@example.com');
    await shot(admin, 'order');
  }, 120_000);

  it('finds a lending item\'s dead letter by its loan id, refuses a bad fix, redrives a good one, and the counts move live', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `LC-${randomUUID().slice(0, 6)}-${i}`);
    const broken = ids[4]!;
    t24.sim.setKnobs({ missing: [...t24.sim.knobs().missing, broken] });
    const created = await k.c.post('/api/lending/orders', { investorId: 'inv-console', items: ids.map((loanId) => ({ loanId, amount: 100 })) });
    expect(created.status).toBe(202);
    const orderId = created.body.id as string;
    await eventually(async () => ((await k.c.get(`/api/lending/orders/${orderId}`)).body.status === 'PARTIALLY_INVESTED' ? true : null), { timeoutMs: 60_000, what: 'lending order partially invested' });

    // A second tab watches the order's progress.
    const watch = await open();
    await signIn(watch, ADMIN);
    await watch.goto(`/admin/lending/${orderId}`);
    const counts = watch.getByRole('table', { name: /Item counts/ });
    await expect.poll(async () => await counts.textContent(), { timeout: 30_000 }).toMatch(/PARTIALLY_INVESTED\s*20\s*0\s*0\s*19\s*1/);
    await watch.getByRole('table', { name: /Items that failed/ }).getByText('LOAN_NOT_FOUND').first().waitFor();
    await watch.getByText('Live updates on.').first().waitFor();
    await mark(watch);
    await shot(watch, 'lending');

    await admin.goto('/admin/lending');
    await admin.getByLabel('Loan id').fill(broken);
    await admin.getByRole('button', { name: 'Find dead letters' }).click();
    await admin.getByText('1 entry matches').waitFor();
    await admin.getByRole('table', { name: /Dead letters/ }).getByRole('link').first().click();
    const payload = admin.getByLabel(/Payload \(JSON/);
    expect(JSON.parse(await payload.inputValue())).toEqual({ orderId, loanId: broken });
    await payload.fill(JSON.stringify({ orderId: 'not-a-uuid', loanId: broken }));
    await admin.getByRole('button', { name: 'Redrive with this payload' }).click();
    await admin.getByText(/does not fit the schema of lending\.items\.reserve/).first().waitFor();
    expect(await admin.getByLabel(/Payload \(JSON/).getAttribute('aria-invalid')).toBe('true');
    await shot(admin, 'dlq-entry');

    t24.sim.seedLoans([broken]); // the loan is fixed in T24
    await admin.getByLabel(/Payload \(JSON/).fill(JSON.stringify({ orderId, loanId: broken }, null, 2));
    await admin.getByRole('button', { name: 'Redrive with this payload' }).click();
    await admin.getByText(/redriven to lending\.items\.reserve/).waitFor();

    await expect.poll(async () => await counts.textContent(), { timeout: 60_000 }).toMatch(/SUCCESS\s*20\s*0\s*0\s*20\s*0/);
    expect(await stillMarked(watch)).toBe(true);
  }, 180_000);

  it('a bulk redrive redrives the count its dry run showed', async () => {
    const ids = Array.from({ length: 6 }, (_, i) => `LB-${randomUUID().slice(0, 6)}-${i}`);
    const missing = ids.slice(0, 3);
    t24.sim.setKnobs({ missing: [...t24.sim.knobs().missing, ...missing] });
    const created = await k.c.post('/api/lending/orders', { investorId: 'inv-bulk', items: ids.map((loanId) => ({ loanId, amount: 50 })) });
    const orderId = created.body.id as string;
    await eventually(async () => ((await k.c.get(`/api/admin/dlq?key=${orderId}`)).body.total === 3 ? true : null), { timeoutMs: 60_000, what: '3 dead letters' });
    t24.sim.seedLoans(missing);

    await admin.goto('/admin/dlq');
    await admin.getByLabel('Business key').fill(orderId);
    await admin.getByRole('button', { name: 'Filter' }).click();
    await admin.getByText('3 entries match').waitFor();
    await shot(admin, 'dlq');
    await admin.getByRole('button', { name: 'Redrive every matching entry…' }).click();
    await admin.getByText(/Dry run: 3 entries match/).waitFor();
    await shot(admin, 'dlq-bulk-confirm');
    await admin.getByRole('button', { name: 'Redrive 3 entries' }).click();
    await admin.getByText('Redriven 3 of 3 matching entries.').waitFor();
    await eventually(async () => ((await k.c.get(`/api/lending/orders/${orderId}`)).body.status === 'SUCCESS' ? true : null), { timeoutMs: 60_000, what: 'lending order SUCCESS after the bulk redrive' });
  }, 120_000);

  it('shows streams and consumers', async () => {
    await admin.goto('/admin/streams');
    await admin.getByRole('table', { name: 'Durable consumers' }).getByRole('rowheader', { name: 'lending-items' }).waitFor();
    await shot(admin, 'streams');
  }, 60_000);

  it('a reviewer approves a pending review and sees the payout; another is rejected with the keyboard alone', async () => {
    const first = (await k.c.post('/api/funding/applications', pendingReviewBody({ businessId: `biz-${randomUUID().slice(0, 6)}`, businessName: 'Console Approve Ltd' }))).body.id as string;
    const second = (await k.c.post('/api/funding/applications', pendingReviewBody({ businessId: `biz-${randomUUID().slice(0, 6)}`, businessName: 'Console Keyboard Ltd' }))).body.id as string;
    await waitForStatus(k.c.get, first, 'pending_review');
    await waitForStatus(k.c.get, second, 'pending_review');

    const page = await open();
    await signIn(page, reviewer);
    await expect.poll(() => page.url(), { timeout: 30_000 }).toMatch(/\/admin\/funding$/);
    // A reviewer's console has no other sections.
    expect(await page.getByRole('navigation', { name: 'Console sections' }).getByRole('link').allTextContents()).toEqual(['Funding']);
    await shot(page, 'funding');
    await page.getByRole('link', { name: 'Console Approve Ltd' }).click();
    await page.getByLabel('Approve').check();
    await page.getByLabel(/^Note/).fill('figures checked by phone');
    await page.getByRole('button', { name: 'Record decision' }).click();
    await page.getByText(`Recorded: approved by ${reviewer.email}.`).waitFor();
    const outcome = page.locator('#outcome');
    await expect.poll(async () => await outcome.textContent(), { timeout: 60_000 }).toMatch(/Payout\s*paid/);
    expect(await outcome.textContent()).toContain(`approved by ${reviewer.email}`);
    await shot(page, 'funding-decided');

    // The keyboard alone: skip link, then Tab to the application, Enter, Tab to the choice, Space, type, Enter.
    await page.goto('/admin/funding');
    const focused = async () => await page.evaluate(() => {
      const el = document.activeElement as HTMLElement | null;
      return el ? `${el.tagName.toLowerCase()}|${el.getAttribute('value') ?? ''}|${el.textContent?.trim() ?? ''}|${el.id}` : '';
    });
    const tabTo = async (want: RegExp, max = 40) => {
      for (let i = 0; i < max; i++) {
        await page.keyboard.press('Tab');
        if (want.test(await focused())) return;
      }
      throw new Error(`Tab never reached ${want}; focus is on ${await focused()}`);
    };
    await page.keyboard.press('Tab');
    expect(await focused()).toMatch(/^a\|\|Skip to main content/);
    await page.keyboard.press('Enter');
    await tabTo(/^a\|\|Console Keyboard Ltd/);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Application from Console Keyboard Ltd' }).waitFor();
    // Tab enters the radio group on its first choice; an arrow key moves to (and picks) the next.
    await tabTo(/^input\|approved\|/);
    await page.keyboard.press('ArrowDown');
    expect(await focused()).toMatch(/^input\|rejected\|/);
    await tabTo(/^textarea\|\|\|note$/);
    await page.keyboard.type('declined: keyboard review');
    await tabTo(/^button\|\|Record decision/);
    await page.keyboard.press('Enter');
    await page.getByText(`Recorded: rejected by ${reviewer.email}.`).waitFor();
    const app = (await k.c.get(`/api/funding/applications/${second}`)).body;
    expect(app).toMatchObject({ status: 'rejected', review: { decision: 'rejected', reviewer: reviewer.email, note: 'declined: keyboard review' } });
  }, 180_000);

  it('refuses a customer account', async () => {
    const email = `customer-${randomUUID().slice(0, 8)}@example.com`;
    await k.c.post('/api/auth/register', { email, password: PASSWORD, name: 'Customer' });
    const page = await open();
    await signIn(page, { email, password: PASSWORD });
    await page.getByRole('alert').filter({ hasText: 'no access to the operator console' }).waitFor();
    expect(page.url()).toContain('/admin/login');
    await page.goto('/admin/orders');
    await expect.poll(() => page.url(), { timeout: 30_000 }).toContain('/admin/login');
  }, 60_000);
});
