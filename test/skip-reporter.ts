// Skip accounting, registered in test/vitest.config.ts next to the default
// reporter. At the end of a run it prints how many tests were skipped and
// why (the reason skipUnless() recorded, test/skip.ts), and fails the run
// (exit status 1) when a reason is not one README.md allows: the bullets
// under "### Tests skipped on some machines", each starting with the reason
// in backticks. A skip with no reason (a bare it.skip, describe.skipIf,
// ctx.skip() without a note) is never allowed.
//
// Tests left out by -t/--testNamePattern are counted as filtered, not as skips.
// VUB_SKIP_CHECK=report prints the same but does not fail (local debugging).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Reporter, TestCase, TestModule, TestSuite, Vitest } from 'vitest/node';

export const ALLOWLIST_HEADING = 'Tests skipped on some machines';
export const NO_REASON = 'no reason given (a bare skip: use skipUnless() from test/skip.ts)';

/** The allowed reasons: the first `code span` of each bullet in the README section. */
export function allowedSkips(readme: string): string[] | null {
  const lines = readme.split('\n');
  const start = lines.findIndex((l) => /^#{2,4}\s+/.test(l) && l.replace(/^#+\s+/, '').trim() === ALLOWLIST_HEADING);
  if (start < 0) return null;
  const out: string[] = [];
  for (const l of lines.slice(start + 1)) {
    if (/^#{1,4}\s/.test(l)) break;
    const m = /^[-*]\s+`([^`]+)`/.exec(l);
    if (m) out.push(m[1]!);
  }
  return out;
}

/** Why a skipped test was skipped: its own reason, its nearest suite's, or ctx.skip()'s note. */
export function skipReason(t: TestCase): string {
  const own = t.meta().skipReason;
  if (own) return own;
  for (let p: TestSuite | TestModule = t.parent; ; p = p.parent) {
    const r = p.meta().skipReason;
    if (r) return r;
    if (p.type === 'module') break;
  }
  const r = t.result();
  return (r.state === 'skipped' && r.note) || NO_REASON;
}

export interface SkipSummary {
  byReason: Map<string, string[]>;
  filtered: number;
  unlisted: string[];
}

export function summarize(modules: ReadonlyArray<TestModule>, allowed: readonly string[], namePattern: RegExp | null): SkipSummary {
  const byReason = new Map<string, string[]>();
  let filtered = 0;
  for (const m of modules) {
    for (const t of m.children.allTests()) {
      if (t.result().state !== 'skipped') continue;
      const reason = skipReason(t);
      if (reason === NO_REASON && namePattern && !namePattern.test(t.fullName)) {
        filtered++;
        continue;
      }
      const list = byReason.get(reason) ?? [];
      list.push(`${t.module.moduleId.replace(/^.*?\/test\//, 'test/')} > ${t.fullName}`);
      byReason.set(reason, list);
    }
  }
  return { byReason, filtered, unlisted: [...byReason.keys()].filter((r) => !allowed.includes(r)) };
}

export default class SkipReporter implements Reporter {
  private root = process.cwd();
  private pattern: RegExp | null = null;

  onInit(vitest: Vitest): void {
    this.root = vitest.config.root;
    const p = vitest.config.testNamePattern;
    this.pattern = p ? (typeof p === 'string' ? new RegExp(p) : p) : null;
  }

  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const readmePath = join(this.root, 'README.md');
    let allowed: string[] | null = null;
    try {
      allowed = allowedSkips(readFileSync(readmePath, 'utf8'));
    } catch { /* reported below */ }
    const s = summarize(modules, allowed ?? [], this.pattern);
    const total = [...s.byReason.values()].reduce((n, l) => n + l.length, 0);
    const out: string[] = ['', `skips: ${total} skipped${s.filtered ? ` (${s.filtered} more left out by the name filter)` : ''}`];
    for (const [reason, tests] of [...s.byReason].sort((a, b) => b[1].length - a[1].length)) {
      out.push(`  ${String(tests.length).padStart(4)}  ${reason}${allowed?.includes(reason) ? '' : '   <- NOT LISTED in README.md'}`);
      for (const t of tests.slice(0, 5)) out.push(`          ${t}`);
      if (tests.length > 5) out.push(`          ... and ${tests.length - 5} more`);
    }
    let fail = false;
    if (allowed === null) {
      out.push(`skips: README.md has no "### ${ALLOWLIST_HEADING}" section: no skip is allowed`);
      fail = total > 0;
    }
    if (s.unlisted.length) {
      out.push(`skips: FAILED: ${s.unlisted.length} reason(s) not listed under "### ${ALLOWLIST_HEADING}" in README.md: ${s.unlisted.map((r) => JSON.stringify(r)).join(', ')}`);
      fail = true;
    }
    process.stdout.write(`${out.join('\n')}\n`);
    if (fail && process.env.VUB_SKIP_CHECK !== 'report') process.exitCode = 1;
  }
}
