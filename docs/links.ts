// Relative links in the repository's Markdown, checked offline: a link to a file that
// is not there, or to a heading anchor its target does not have, is reported. The
// documents cross-link heavily (ADRs, benchmarks, runbook sections), and a rename
// breaks them silently on GitHub; docs/docs.test.ts runs this over README.md and docs/.
// Also a sanity check of mermaid blocks, which GitHub renders and nothing here parses.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

export type LinkProblem = { file: string; line: number; target: string; problem: string };

/** Every `.md` under `dir`, recursively (node_modules and dot-folders skipped). `markdownFiles('docs')` */
export function markdownFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name.startsWith('.') || name === 'node_modules') continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...markdownFiles(p));
    else if (name.endsWith('.md')) out.push(p);
  }
  return out.sort();
}

/** Lines outside fenced code blocks; with `blankCode`, inline code spans blanked (a link shown as code is not a link). */
function proseLines(text: string, blankCode = true): { line: number; text: string }[] {
  const out: { line: number; text: string }[] = [];
  let fence: string | null = null;
  text.split('\n').forEach((raw, i) => {
    const m = /^\s*(```+|~~~+)/.exec(raw);
    if (m) {
      if (fence === null) fence = m[1]![0]!;
      else if (m[1]![0] === fence) fence = null;
      return;
    }
    if (fence === null) out.push({ line: i + 1, text: blankCode ? raw.replace(/`[^`]*`/g, (s) => ' '.repeat(s.length)) : raw });
  });
  return out;
}

/**
 * GitHub's anchor for a heading: lower case, punctuation dropped (letters, digits, `-`, `_`
 * and spaces kept), spaces to `-`; a repeated heading gets `-1`, `-2`, ...
 * `headingAnchors('# Metric names\n## OrderflowDlqGrowing').has('orderflowdlqgrowing') // true`
 */
export function headingAnchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const { text: line } of proseLines(text, false)) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = m[1]!.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

const INLINE_LINK = /!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g;
const REFERENCE_DEF = /^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$/;

/** The relative link targets of a Markdown text, with their line numbers. */
export function linkTargets(text: string): { line: number; target: string }[] {
  const out: { line: number; target: string }[] = [];
  for (const { line, text: l } of proseLines(text)) {
    for (const m of l.matchAll(INLINE_LINK)) out.push({ line, target: m[1]! });
    const ref = REFERENCE_DEF.exec(l);
    if (ref) out.push({ line, target: ref[1]! });
  }
  // A scheme (https:, mailto:) or a protocol-relative URL is not a file of ours.
  return out.filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t.target) && !t.target.startsWith('//'));
}

/** Problems of every relative link in `files`, paths reported relative to `root`. `checkLinks(root, [join(root, 'README.md')])` */
export function checkLinks(root: string, files: string[]): LinkProblem[] {
  const problems: LinkProblem[] = [];
  const anchorsOf = new Map<string, Set<string>>();
  const anchors = (file: string) => {
    let a = anchorsOf.get(file);
    if (!a) anchorsOf.set(file, (a = headingAnchors(readFileSync(file, 'utf8'))));
    return a;
  };
  for (const file of files) {
    const rel = relative(root, file);
    for (const { line, target } of linkTargets(readFileSync(file, 'utf8'))) {
      const [pathPart = '', anchor] = target.split('#', 2);
      const path = decodeURIComponent(pathPart.split('?')[0]!);
      const dest = path === '' ? file : resolve(dirname(file), path);
      if (!dest.startsWith(resolve(root))) {
        problems.push({ file: rel, line, target, problem: 'points outside the repository' });
        continue;
      }
      if (!existsSync(dest)) {
        problems.push({ file: rel, line, target, problem: 'no such file' });
        continue;
      }
      if (anchor && dest.endsWith('.md') && !anchors(dest).has(anchor.toLowerCase())) {
        problems.push({ file: rel, line, target, problem: `no heading with anchor #${anchor} in ${relative(root, dest)}` });
      }
    }
  }
  return problems;
}

const MERMAID_TYPES = ['flowchart', 'graph', 'sequenceDiagram', 'stateDiagram', 'stateDiagram-v2', 'classDiagram', 'erDiagram', 'gantt', 'pie', 'journey'];

/**
 * Mermaid blocks that GitHub would fail to render for reasons visible without a parser: an
 * unknown diagram type, or a `;` in a sequence diagram, which mermaid reads as the end of a
 * statement (the rest of the message becomes a syntax error). `mermaidProblems(text)`
 */
export function mermaidProblems(text: string): { line: number; problem: string }[] {
  const out: { line: number; problem: string }[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*```mermaid\s*$/.test(lines[i]!)) continue;
    const start = i + 1;
    const body: { line: number; text: string }[] = [];
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]!); i++) body.push({ line: i + 1, text: lines[i]! });
    const first = body.find((b) => b.text.trim() !== '');
    const type = first?.text.trim().split(/\s+/)[0] ?? '';
    if (!MERMAID_TYPES.includes(type)) out.push({ line: start, problem: `unknown mermaid diagram type "${type}"` });
    if (type === 'sequenceDiagram') {
      for (const b of body) if (b.text.includes(';')) out.push({ line: b.line, problem: 'a ";" in a sequence diagram ends the statement' });
    }
  }
  return out;
}
