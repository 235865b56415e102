// What the dashboards and alert rules query, for the test that checks the cluster exports it.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';

export const OPS_DIR = new URL('./', import.meta.url).pathname;
export const ALERTS_DIR = join(OPS_DIR, 'alerts');
export const DASHBOARDS_DIR = join(OPS_DIR, 'dashboards');

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'offset', 'bool', 'atan2', 'inf', 'nan']);

/**
 * The metric names a PromQL expression reads (functions, keywords, labels and Grafana
 * variables left out). `metricNames('sum by (le) (rate(x_bucket{a="b"}[5m]))') // ['x_bucket']`
 */
export function metricNames(expr: string): string[] {
  const s = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""') // strings first: they may hold braces or parentheses
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // ranges and subqueries
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // label lists
    .replace(/\$\{?\w+\}?/g, ' '); // Grafana variables
  const names = new Set<string>();
  for (const m of s.matchAll(/(?<![\w:.])[a-zA-Z_:][\w:]*/g)) {
    const rest = s.slice(m.index + m[0].length).trimStart();
    if (rest.startsWith('(') || KEYWORDS.has(m[0].toLowerCase())) continue;
    names.add(m[0]);
  }
  return [...names];
}

export type Rule = { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
export type RuleFile = { file: string; groups: { name: string; rules: Rule[] }[] };

/** The rule files of ops/alerts (not their promtool tests). */
export function ruleFiles(): RuleFile[] {
  return readdirSync(ALERTS_DIR).filter((f) => f.endsWith('.yaml') && !f.endsWith('.test.yaml')).sort()
    .map((file) => ({ file, groups: parse(readFileSync(join(ALERTS_DIR, file), 'utf8')).groups }));
}

/** The promtool unit-test files of ops/alerts. */
export const ruleTestFiles = (): string[] => readdirSync(ALERTS_DIR).filter((f) => f.endsWith('.test.yaml')).sort();

export type Dashboard = { uid: string; title: string; panels: Panel[]; templating?: { list: { name: string; query?: string | { query?: string } }[] } };
export type Panel = { id: number; type: string; title: string; targets?: { expr: string }[]; panels?: Panel[] };

export function dashboards(): { file: string; dashboard: Dashboard }[] {
  return readdirSync(DASHBOARDS_DIR).filter((f) => f.endsWith('.json')).sort()
    .map((file) => ({ file, dashboard: JSON.parse(readFileSync(join(DASHBOARDS_DIR, file), 'utf8')) as Dashboard }));
}

/** Every query of the dashboards and rules, with where it comes from. */
export function allQueries(): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  for (const f of ruleFiles()) for (const g of f.groups) for (const r of g.rules) out.push({ where: `${f.file} ${r.alert ?? r.record}`, expr: r.expr });
  for (const { file, dashboard } of dashboards()) {
    const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
    for (const p of panels) for (const t of p.targets ?? []) out.push({ where: `${file} "${p.title}"`, expr: t.expr });
    for (const v of dashboard.templating?.list ?? []) {
      const q = typeof v.query === 'string' ? v.query : v.query?.query;
      // label_values(metric, label): the metric is the first argument.
      const lv = q && /label_values\(\s*([^,)]+)/.exec(q);
      if (lv) out.push({ where: `${file} variable ${v.name}`, expr: lv[1]! });
    }
  }
  return out;
}

/** Names a /metrics text exposes, histogram and summary series included. */
export function exportedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\w+)/.exec(line);
    if (type) {
      const [, name, kind] = type;
      if (kind === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
      else if (kind === 'summary') for (const s of ['', '_sum', '_count']) names.add(name + s);
      else names.add(name!);
    } else if (line && !line.startsWith('#')) {
      names.add(line.split(/[{ ]/)[0]!);
    }
  }
  return names;
}
