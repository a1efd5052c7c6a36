// The discard thread's suspension and priority inheritance, checked
// deterministically in C (native/test/discard-thread-check.c) against the
// project's own libraries: a simulated guest hits these windows by chance only.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SKIP, skipUnless } from '../skip.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const NATIVE = realpathSync(join(ROOT, 'native', 'build'));
let dir: string;
let bin: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vub-native-'));
  bin = join(dir, 'discard-thread-check');
  const lvu = readFileSync(join(NATIVE, 'libvhost-user-src'), 'utf8').trim();
  execFileSync('gcc', [
    '-O1', '-g', '-D_GNU_SOURCE', '-std=gnu99', '-Wall', '-Werror', `-I${join(ROOT, 'native')}`, `-I${lvu}`, `-I${join(lvu, 'include')}`,
    join(ROOT, 'native', 'test', 'discard-thread-check.c'), `-L${NATIVE}`, '-lvub-shim', '-lvhost-user', '-lpthread', `-Wl,-rpath,${NATIVE}`, '-o', bin,
  ], { stdio: 'pipe' });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function check(mode: string): { status: number | null; out: string } {
  const r = spawnSync(bin, [mode], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}`.trim() };
}

describe('discard thread across a queue stop', () => {
  it('a chunk taken before GET_VRING_BASE is not discarded once the stop suspended the job', () => {
    const r = check('suspend');
    expect(r.status, r.out).toBe(0);
  });

  it('without the suspension the same chunk is discarded after the reply (the window is real)', () => {
    const r = check('legacy');
    expect(r.status, r.out).toBe(0);
  });

  it('resume after a pause discards the whole job', () => {
    expect(check('resume').status).toBe(0);
  });

  it('drop after a reset forgets the job and the thread takes the next one', () => {
    const r = check('drop');
    expect(r.status, r.out).toBe(0);
  });
});

describe('priority inheritance on the thread\'s mutexes', () => {
  skipUnless(process.getuid?.() === 0, SKIP.notRoot).it('a SCHED_FIFO waiter boosts the nice-10 holder of map_lock and of lock', () => {
    const r = check('pi');
    console.log(`priority inheritance: ${r.out}`);
    expect(r.status, r.out).toBe(0);
  });
});
