// Every test that may not run on some machine goes through skipUnless(), which
// carries the reason: the skip reporter (test/skip-reporter.ts) prints the
// skips grouped by reason at the end of a run and fails the run when a reason
// is not listed in README.md under "### Tests skipped on some machines".
//
//   skipUnless(isRoot, SKIP.notRoot).describe('...', () => { ... });
//   skipUnless(haveV1Memory, SKIP.noV1Memory).it('...', async () => { ... });
//   skipUnlessAll([isRoot, SKIP.notRoot], [haveV2Psi, SKIP.noPsi]).describe(...);
//
// When the condition holds these are vitest's own describe/it; when it does
// not, vitest's describe.skip/it.skip, with the reason in the task's meta.
import { describe, it } from 'vitest';
import { getCurrentSuite } from 'vitest/suite';

declare module 'vitest' {
  interface TaskMeta {
    /** Why skipUnless() skipped this test or suite. */
    skipReason?: string;
  }
}

/**
 * The reasons, word for word as README.md lists them. A new reason needs a
 * README bullet too, or a machine that skips for it fails the run.
 */
export const SKIP = {
  notRoot: 'not root',
  noV1Memory: 'no cgroup v1 memory controller (vmpressure)',
  noPsi: 'no cgroup2 mount with PSI',
  noMemoryLimit: 'no memory cgroup to limit (neither cgroup v1 memory nor the cgroup2 memory controller)',
  noUnshare: 'no unshare(1) to make a private mount namespace',
  noSystemdAnalyze: 'no systemd-analyze (systemd not installed)',
} as const;

/** describe and it (with .each) as vitest has them; when skipped, their .skip forms. */
export interface Gate {
  describe: typeof describe.skip;
  it: typeof it.skip;
}

type Registrar = ((...args: unknown[]) => unknown) & { each?: (...cases: unknown[]) => (...args: unknown[]) => unknown };

/** Run `register` and stamp `reason` on the tests and suites it added to the suite being collected. */
function stamped(reason: string, register: () => unknown): void {
  const tasks = getCurrentSuite().tasks;
  const before = tasks.length;
  register();
  for (const t of tasks.slice(before)) {
    if (t.type === 'collector') {
      if (t.suite) t.suite.meta.skipReason = reason;
    } else t.meta.skipReason = reason;
  }
}

function skipping<T>(skipFn: T, reason: string): T {
  const base = skipFn as unknown as Registrar;
  const f = ((...args: unknown[]) => stamped(reason, () => base(...args))) as Registrar;
  f.each = (...cases: unknown[]) => (...args: unknown[]) => stamped(reason, () => base.each!(...cases)(...args));
  return f as unknown as T;
}

/** vitest's describe/it when `cond` holds; skipped, with `reason` recorded, when it does not. */
export function skipUnless(cond: unknown, reason: string): Gate {
  if (cond) return { describe, it };
  return { describe: skipping(describe.skip, reason), it: skipping(it.skip, reason) };
}

/** Several conditions: skipped for the first one that does not hold. */
export function skipUnlessAll(...gates: Array<[cond: unknown, reason: string]>): Gate {
  const failed = gates.find(([cond]) => !cond);
  return failed ? skipUnless(false, failed[1]) : { describe, it };
}
