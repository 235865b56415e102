import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkLinks, headingAnchors, linkTargets, markdownFiles, mermaidProblems } from './links.ts';

const root = resolve(import.meta.dirname, '..');
const documents = [join(root, 'README.md'), ...markdownFiles(join(root, 'docs'))];

describe('the repository\'s documents', () => {
  it('have no relative link to a missing file or heading (README.md and docs/)', () => {
    expect(documents.length).toBeGreaterThan(10);
    expect(checkLinks(root, documents)).toEqual([]);
  });

  it('have mermaid blocks GitHub can render (known type, no ";" in a sequence diagram)', () => {
    const problems = documents.flatMap((f) => mermaidProblems(readFileSync(f, 'utf8')).map((p) => ({ file: f.slice(root.length + 1), ...p })));
    expect(problems).toEqual([]);
  });
});

describe('the link checker', () => {
  const dir = mkdtempSync(join(tmpdir(), 'docs-links-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'docs', 'adr'), { recursive: true });
  writeFileSync(join(dir, 'docs', 'adr', '0001-x.md'), '# 0001: X\n\n## Costs and state\n');
  writeFileSync(join(dir, 'docs', 'runbook.md'), '# Runbook\n\n## OrderflowDlqGrowing\n\n## Metric names\n\n## Metric names\n');
  writeFileSync(join(dir, 'docs', 'a.md'), [
    '# A',
    '[ok](adr/0001-x.md) [ok anchor](runbook.md#orderflowdlqgrowing) [ok repeat](runbook.md#metric-names-1)',
    '[ok section](adr/0001-x.md#costs-and-state) [self](#a) [web](https://example.com/missing.md) [mail](mailto:x@y.z)',
    '[gone](adr/0002-y.md)',
    '[bad anchor](runbook.md#orderflowdlqshrinking)',
    '`[as code](nowhere.md)`',
    '```',
    '[in a fence](nowhere.md)',
    '```',
    '[up and out](../../outside.md)',
    '[ref]: missing-ref.md',
  ].join('\n'));

  it('reports a missing file, a missing anchor, a reference definition and a path outside the root, and nothing else', () => {
    const problems = checkLinks(dir, [join(dir, 'docs', 'a.md')]);
    expect(problems.map((p) => [p.line, p.target, p.problem.split(' ')[0]])).toEqual([
      [4, 'adr/0002-y.md', 'no'],
      [5, 'runbook.md#orderflowdlqshrinking', 'no'],
      [10, '../../outside.md', 'points'],
      [11, 'missing-ref.md', 'no'],
    ]);
    expect(problems[1]!.problem).toContain('#orderflowdlqshrinking');
  });

  it('makes GitHub\'s heading anchors, numbering repeats', () => {
    expect([...headingAnchors('# 0007: Cluster-wide rate limits\n## `x` and y\n## Dup\n## Dup\n```\n# not a heading\n```')])
      .toEqual(['0007-cluster-wide-rate-limits', 'x-and-y', 'dup', 'dup-1']);
  });

  it('skips links inside code', () => {
    expect(linkTargets('see `[a](b.md)` and\n```\n[c](d.md)\n```\n[e](f.md)')).toEqual([{ line: 5, target: 'f.md' }]);
  });

  it('flags an unknown mermaid type and a ";" in a sequence diagram', () => {
    const text = '```mermaid\nflowhcart LR\n  a --> b\n```\n\n```mermaid\nsequenceDiagram\n  A->>B: one; two\n```\n';
    expect(mermaidProblems(text).map((p) => p.line)).toEqual([1, 8]);
    expect(mermaidProblems('```mermaid\nflowchart LR\n  a["x; y"] --> b\n```')).toEqual([]);
  });
});
