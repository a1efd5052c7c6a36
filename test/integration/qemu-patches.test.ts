// Our QEMU patches (qemu/patches/*.patch) as a QEMU maintainer would take
// them: each passes QEMU's own scripts/checkpatch.pl (from the Debian source
// tree native/setup.sh extracts), carries a Signed-off-by, and applies, in
// order, to that tree.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const PATCHES = join(ROOT, 'qemu', 'patches');
const patches = readdirSync(PATCHES).filter((f) => f.endsWith('.patch')).sort();

describe('the QEMU patches', () => {
  let src = '';
  let scratch = '';

  beforeAll(() => {
    src = execFileSync('bash', ['-c', `source ${join(ROOT, 'native', 'lib.sh')} && qemu_source_tree`], { encoding: 'utf8' }).trim().split('\n').pop()!;
    scratch = mkdtempSync(join(tmpdir(), 'vub-qemu-patches-'));
  }, 600_000);
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('are numbered from 0001, in the order build.sh applies them', () => {
    expect(patches.map((p) => p.slice(0, 4))).toEqual(patches.map((_, i) => String(i + 1).padStart(4, '0')));
  });

  it.each(patches)('%s passes scripts/checkpatch.pl and is signed off', (p) => {
    const file = join(PATCHES, p);
    const r = spawnSync('perl', [join(src, 'scripts', 'checkpatch.pl'), '--no-tree', file], { cwd: src, encoding: 'utf8' });
    expect(r.stdout, r.stdout + r.stderr).toMatch(/total: 0 errors, 0 warnings/);
    expect(r.status).toBe(0);
    expect(readFileSync(file, 'utf8')).toMatch(/^Signed-off-by: .+ <[^>]+>$/m);
  });

  it('apply in order to the source tree', () => {
    const tree = join(scratch, 'tree');
    // Only the files the patches touch need to be there; a full copy is 300 MiB.
    for (const dir of ['hw', 'include', 'softmmu']) cpSync(join(src, dir), join(tree, dir), { recursive: true });
    cpSync(join(src, 'MAINTAINERS'), join(tree, 'MAINTAINERS'));
    for (const p of patches) {
      const r = spawnSync('patch', ['-d', tree, '-p1', '--forward', '--batch', '-i', join(PATCHES, p)], { encoding: 'utf8' });
      expect(r.status, `${p}: ${r.stdout}${r.stderr}`).toBe(0);
    }
  }, 120_000);
});
