// The skip reasons in code (test/skip.ts) and the allowlist in README.md
// agree, and the reporter reads the allowlist as intended.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { allowedSkips } from '../skip-reporter.js';
import { SKIP } from '../skip.js';

const README = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');

describe('skip reasons', () => {
  it('README.md lists exactly the reasons test/skip.ts gives', () => {
    expect(allowedSkips(README)?.sort()).toEqual(Object.values(SKIP).sort());
  });

  it('the allowlist is the first code span of each bullet in its section, up to the next heading', () => {
    const text = ['# x', '- `not here`', '### Tests skipped on some machines', '', 'Intro with `code`.', '', '- `a`: why', '* `b c` and `d`', '- no code', '## next', '- `e`'].join('\n');
    expect(allowedSkips(text)).toEqual(['a', 'b c']);
    expect(allowedSkips('# nothing')).toBeNull();
  });
});
