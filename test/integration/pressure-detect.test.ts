// Choosing the source on this machine, and the startup errors: a missing
// path, a missing controller or a permission problem names the path and what
// to do (EBALLOON_PRESSURE_*), never a silent no-op. Real cgroup paths, found
// in /proc/self/mountinfo; the expectations follow the layout (hybrid: v1
// memory + cgroup2 PSI; v2-only: PSI alone). The permission cases use
// read-only bind mounts of real groups (EROFS). cgroup-v2-only.test.ts runs
// detection in a private mount namespace that looks like a v2-only host.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BalloonError } from '../../src/errors.js';
import { cgroupLayout, layoutOf, memoryCgroupRoot, parseMountinfo } from '../../src/host/cgroups.js';
import { silentLogger } from '../../src/log.js';
import { DEFAULT_PRESSURE, describePlan, planPressure, PressureConfig } from '../../src/pressure/detect.js';
import { isPressureError, openError, PressureErrorCode } from '../../src/pressure/errors.js';
import { PsiSource } from '../../src/pressure/psi.js';
import { PressureSupervisor, Timers } from '../../src/pressure/supervisor.js';
import type { HostPressureEvent, PressureSource } from '../../src/pressure/types.js';
import { VmpressureSource } from '../../src/pressure/vmpressure.js';
import { EpollLoop } from '../../src/transport/event-loop.js';
import { SKIP, skipUnless, skipUnlessAll } from '../skip.js';
import {
  cleanupLeftovers, haveV1Memory, haveV2Psi, isRoot, layout, makeCgroup, makePsiGroup, type PsiGroup, roMountDir, SYSTEM_PSI,
  type TestCgroup, V1_MEMORY, V2,
} from './pressure-helpers.js';

const cfg = (over: Partial<PressureConfig>): PressureConfig => ({ ...DEFAULT_PRESSURE, ...over });

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

function expectPressureError(err: unknown, code: PressureErrorCode, message: RegExp, hint: RegExp): void {
  expect(isPressureError(err, code)).toBe(true);
  const e = err as BalloonError;
  expect(e.code).toBe('EBALLOON_PRESSURE');
  expect(e.message.split('\n')[0]).toMatch(message);
  expect(e.hint).toMatch(hint);
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

// Mountinfo lines as the three layouts show them (trimmed to the cgroup mounts and one other).
const HYBRID = [
  '25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw',
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
  '35 31 0:32 / /sys/fs/cgroup/my\\040memory rw,relatime - cgroup cgroup rw,memory',
  '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  // A read-only bind mount of one memcg (as the permission test below makes): not the hierarchy.
  '90 31 0:32 /vub-pressure-1 /tmp/vub-pressure-ro.1-1 ro,relatime - cgroup cgroup rw,memory',
].join('\n');
const V2_ONLY = [
  '25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw',
  '26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot',
].join('\n');
const V1_ONLY = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
].join('\n');

describe('cgroup mounts from /proc/self/mountinfo', () => {
  it('parses cgroup and cgroup2 mounts: mount point unescaped, root, v1 controllers', () => {
    expect(parseMountinfo(HYBRID).map((m) => [m.mountPoint, m.version, m.root, m.options.join(',')])).toEqual([
      ['/sys/fs/cgroup/cpu', 1, '/', 'cpu'],
      ['/sys/fs/cgroup/my memory', 1, '/', 'memory'],
      ['/sys/fs/cgroup/systemd', 1, '/', 'name=systemd'],
      ['/sys/fs/cgroup/unified', 2, '/', ''],
      ['/tmp/vub-pressure-ro.1-1', 1, '/vub-pressure-1', 'memory'],
    ]);
    expect(parseMountinfo('')).toEqual([]);
    expect(parseMountinfo('garbage\n1 2 3')).toEqual([]);
  });

  it.each<[string, string, string[], object, object | null]>([
    ['hybrid (this project\'s machines)', HYBRID, ['hugetlb'],
      { kind: 'hybrid', v1Memory: '/sys/fs/cgroup/my memory', v2: '/sys/fs/cgroup/unified' }, { version: 1, root: '/sys/fs/cgroup/my memory' }],
    ['v2 only (Debian 12 with systemd)', V2_ONLY, ['cpuset', 'cpu', 'io', 'memory', 'pids'],
      { kind: 'v2', v1Memory: null, v2: '/sys/fs/cgroup' }, { version: 2, root: '/sys/fs/cgroup' }],
    ['v2 only, memory bound elsewhere (this kernel, in a private mount namespace)', V2_ONLY, ['hugetlb'],
      { kind: 'v2', v1Memory: null, v2: '/sys/fs/cgroup' }, null],
    ['v1 only', V1_ONLY, [], { kind: 'v1', v1Memory: '/sys/fs/cgroup/memory', v2: null }, { version: 1, root: '/sys/fs/cgroup/memory' }],
    ['no cgroups', '', [], { kind: 'none', v1Memory: null, v2: null }, null],
  ])('layout: %s', (_n, text, ctl, want, memRoot) => {
    const l = layoutOf(parseMountinfo(text), () => ctl);
    expect(l).toMatchObject(want);
    expect(memoryCgroupRoot(l)).toEqual(memRoot);
  });

  it('on this machine: agrees with /proc/self/mounts', () => {
    const fromMounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' '))
      .filter((f) => f[2] === 'cgroup' || f[2] === 'cgroup2')
      .map((f) => ({ dir: f[1]!.replace(/\\040/g, ' '), type: f[2], opts: f[3]!.split(',') }));
    const l = cgroupLayout();
    expect(l.v2).toBe(fromMounts.find((m) => m.type === 'cgroup2')?.dir ?? null);
    expect(l.v1Memory).toBe(fromMounts.find((m) => m.type === 'cgroup' && m.opts.includes('memory'))?.dir ?? null);
    expect(['hybrid', 'v2', 'v1']).toContain(l.kind);
  });
});

skipUnlessAll([isRoot, SKIP.notRoot], [haveV1Memory || haveV2Psi, SKIP.noPsi]).describe('planPressure on this machine', () => {
  let v1: TestCgroup | undefined;
  let v2: PsiGroup | undefined;
  let other: string;
  const v1Gate = skipUnless(haveV1Memory, SKIP.noV1Memory);
  const v2Gate = skipUnless(haveV2Psi, SKIP.noPsi);
  beforeAll(async () => {
    await cleanupLeftovers();
    if (haveV1Memory) v1 = makeCgroup();
    if (haveV2Psi) v2 = makePsiGroup();
    // A directory that is neither a v1 memcg nor a cgroup2 group: a v1 cpu cgroup where there is one, else a plain one.
    other = layout.mounts.find((m) => m.version === 1 && m.root === '/' && !m.options.includes('memory') && m.options.length > 0)?.mountPoint
      ?? mkdtempSync(join(tmpdir(), 'vub-not-a-cgroup-'));
  });
  afterAll(async () => {
    await v1?.remove();
    await v2?.remove();
    if (other?.startsWith(tmpdir())) rmSync(other, { recursive: true, force: true });
  });

  it('auto without --memcg: the root v1 memcg where v1 memory is mounted (as in the seed), else system-wide PSI', () => {
    expect(planPressure(cfg({}))).toEqual(haveV1Memory
      ? { kind: 'vmpressure', memcg: V1_MEMORY, level: 'low' }
      : { kind: 'psi', file: SYSTEM_PSI, trigger: DEFAULT_PRESSURE.psiTrigger });
  });

  v1Gate.it.each<[string, Partial<PressureConfig>, () => object]>([
    ['auto with a v1 memcg', {}, () => ({ kind: 'vmpressure', memcg: v1!.v1 })],
    ['explicit vmpressure, level and mode kept', { kind: 'vmpressure', level: 'critical', mode: 'hierarchy' },
      () => ({ kind: 'vmpressure', memcg: v1!.v1, level: 'critical', mode: 'hierarchy' })],
  ])('%s', (_n, over, expected) => {
    expect(planPressure(cfg({ ...over, memcg: v1!.v1 }))).toMatchObject(expected());
  });

  v2Gate.it('auto with a cgroup2 group: PSI on its memory.pressure', () => {
    expect(planPressure(cfg({ memcg: v2!.dir }))).toMatchObject({ kind: 'psi', file: v2!.psiFile });
  });

  it.each<[string, Partial<PressureConfig>, object]>([
    ['explicit psi without --memcg: system-wide', { kind: 'psi' }, { kind: 'psi', file: '/proc/pressure/memory' }],
    ['none', { kind: 'none', memcg: '/nowhere' }, { kind: 'none' }],
  ])('%s', (_n, over, expected) => {
    expect(planPressure(cfg(over))).toMatchObject(expected);
  });

  v1Gate.it('describePlan says what is watched (vmpressure)', () => {
    expect(describePlan(planPressure(cfg({ memcg: v1!.v1, mode: 'hierarchy' })))).toBe(`vmpressure low,hierarchy on ${v1!.v1}`);
  });

  it('describePlan says what is watched (psi)', () => {
    expect(describePlan(planPressure(cfg({ kind: 'psi' })))).toBe('psi "some 100000 2000000" on /proc/pressure/memory');
  });

  it.each<[string, () => Partial<PressureConfig>, PressureErrorCode, () => RegExp, RegExp]>([
    ['a missing memcg (vmpressure)', () => ({ kind: 'vmpressure', memcg: '/sys/fs/cgroup/memory/vub-missing' }), 'EBALLOON_PRESSURE_NOENT',
      () => /^EBALLOON_PRESSURE_NOENT: \/sys\/fs\/cgroup\/memory\/vub-missing does not exist$/, /give --memcg the directory of a cgroup v1 memory cgroup/],
    ['a missing path (auto)', () => ({ memcg: '/sys/fs/cgroup/vub-missing' }), 'EBALLOON_PRESSURE_NOENT',
      () => /\/sys\/fs\/cgroup\/vub-missing does not exist/, /check --memcg/],
    ['a directory of another controller (or none) given to vmpressure', () => ({ kind: 'vmpressure', memcg: other }), 'EBALLOON_PRESSURE_CONTROLLER',
      () => new RegExp(`^EBALLOON_PRESSURE_CONTROLLER: ${esc(other)} has no memory.pressure_level`), /under the v1 memory mount/],
    ['a directory that is neither (auto)', () => ({ memcg: other }), 'EBALLOON_PRESSURE_CONTROLLER',
      () => /neither a cgroup v1 memcg \(memory.pressure_level\) nor a cgroup v2 group \(memory.pressure\)/, /choose --pressure vmpressure\|psi\|none/],
  ])('%s is a startup error naming the path', (_n, over, code, message, hint) => {
    expectPressureError(thrown(() => planPressure(cfg(over()))), code, message(), hint);
  });

  v2Gate.it('a cgroup2 group given to vmpressure is a startup error naming the path', () => {
    expectPressureError(thrown(() => planPressure(cfg({ kind: 'vmpressure', memcg: v2!.dir }))), 'EBALLOON_PRESSURE_CONTROLLER',
      /has no memory.pressure_level: not a cgroup v1 memory cgroup/, /cgroup v2 directory: use --pressure psi/);
  });

  v1Gate.it('a v1 memcg given to psi is a startup error naming the path', () => {
    expectPressureError(thrown(() => planPressure(cfg({ kind: 'psi', memcg: v1!.v1 }))), 'EBALLOON_PRESSURE_CONTROLLER',
      /is a cgroup v1 memory cgroup: it has no memory.pressure/, /use --pressure vmpressure/);
  });

  it('explicit vmpressure without --memcg: the v1 memory mount; where there is none (v2-only), "not mounted, use psi"', () => {
    if (haveV1Memory) expect(planPressure(cfg({ kind: 'vmpressure' }))).toMatchObject({ kind: 'vmpressure', memcg: V1_MEMORY });
    else {
      expectPressureError(thrown(() => planPressure(cfg({ kind: 'vmpressure' }))), 'EBALLOON_PRESSURE_CONTROLLER',
        /the cgroup v1 memory controller is not mounted/, /--pressure psi on cgroup v2 hosts/);
    }
  });

  it.each<[string, Partial<PressureConfig>, RegExp, RegExp]>([
    ['a relative --memcg', { memcg: 'machine.slice' }, /--memcg machine.slice is not an absolute path/, /\/sys\/fs\/cgroup\/memory\/machine.slice/],
    ['a bad level', { level: 'high' as never }, /--pressure-level "high" is not allowed/, /allowed: low, medium, critical/],
    ['a bad mode', { mode: 'all' as never }, /--pressure-mode "all" is not allowed/, /allowed: default, hierarchy, local/],
  ])('%s is EBALLOON_CONFIG', (_n, over, message, hint) => {
    const err = thrown(() => planPressure(cfg(over))) as BalloonError;
    expect(err.code).toBe('EBALLOON_CONFIG');
    expect(err.message).toMatch(message);
    expect(err.hint).toMatch(hint);
  });

  it('no v1 memory controller and no PSI: a startup error, not a silent no-op', () => {
    const probe = { mounts: () => ({ v1Memory: null, unified: null }), exists: () => false };
    expectPressureError(thrown(() => planPressure(cfg({}), probe)), 'EBALLOON_PRESSURE_CONTROLLER',
      /no host memory pressure source: no cgroup v1 memory controller mounted and no PSI/, /--pressure none/);
    expectPressureError(thrown(() => planPressure(cfg({ kind: 'vmpressure' }), { ...probe, isDir: () => false })), 'EBALLOON_PRESSURE_CONTROLLER',
      /the cgroup v1 memory controller is not mounted/, /mount -t cgroup -o memory/);
  });
});

/** A read-only bind mount of `dir` in tmpdir (opening a control file for writing there fails with EROFS). */
function readOnlyView(dir: string): { path: string; remove(): void } {
  const path = roMountDir();
  mkdirSync(path);
  execFileSync('mount', ['--bind', dir, path]);
  execFileSync('mount', ['-o', 'remount,bind,ro', path]);
  return { path, remove: () => { execFileSync('umount', [path]); rmdirSync(path); } };
}

/** What our fds point at under `prefix`. */
const openUnder = (prefix: string) => readdirSync('/proc/self/fd').flatMap((fd) => {
  try {
    return [readlinkSync(`/proc/self/fd/${fd}`)];
  } catch {
    return [];
  }
}).filter((target) => target.startsWith(prefix));

skipUnless(isRoot, SKIP.notRoot).describe('sources starting on bad paths', () => {
  let loop: EpollLoop;
  const cleanups: Array<() => Promise<void> | void> = [];
  beforeAll(async () => {
    await cleanupLeftovers();
    loop = new EpollLoop();
  });
  afterAll(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    loop?.close();
  });

  it('vmpressure on a memcg that vanished before start: NOENT naming memory.pressure_level', () => {
    const src = new VmpressureSource(loop, '/sys/fs/cgroup/memory/vub-missing');
    expectPressureError(thrown(() => src.start(() => {}, () => {})), 'EBALLOON_PRESSURE_NOENT',
      /cannot open \/sys\/fs\/cgroup\/memory\/vub-missing\/memory.pressure_level: No such file or directory/, /check --memcg/);
    expect(src.running).toBe(false);
  });

  skipUnless(haveV1Memory, SKIP.noV1Memory).it('a read-only cgroup mount: PERMISSION naming cgroup.event_control, nothing left open', () => {
    const cg = makeCgroup();
    cleanups.push(() => cg.remove());
    const ro = readOnlyView(cg.v1);
    cleanups.push(() => ro.remove());
    // The level file was opened, then the control file failed: nothing may stay open.
    const src = new VmpressureSource(loop, ro.path);
    expectPressureError(thrown(() => src.start(() => {}, () => {})), 'EBALLOON_PRESSURE_PERMISSION',
      new RegExp(`cannot open ${esc(ro.path)}/cgroup.event_control: Read-only file system`), /mounted read-only/);
    expect(openUnder(ro.path)).toEqual([]);
  });

  skipUnless(haveV2Psi, SKIP.noPsi).it('psi on a missing cgroup2 group: NOENT', () => {
    const src = new PsiSource(loop, `${V2}/vub-missing/memory.pressure`);
    expectPressureError(thrown(() => src.start(() => {}, () => {})), 'EBALLOON_PRESSURE_NOENT', /cannot open .*vub-missing\/memory.pressure/, /cgroup v2 directory/);
  });

  skipUnless(haveV2Psi, SKIP.noPsi).it('psi on a read-only cgroup2 mount: PERMISSION naming memory.pressure, nothing left open', () => {
    const g = makePsiGroup();
    cleanups.push(() => g.remove());
    const ro = readOnlyView(g.dir);
    cleanups.push(() => ro.remove());
    const src = new PsiSource(loop, join(ro.path, 'memory.pressure'));
    expectPressureError(thrown(() => src.start(() => {}, () => {})), 'EBALLOON_PRESSURE_PERMISSION',
      new RegExp(`cannot open ${esc(ro.path)}/memory.pressure: Read-only file system`), /mounted read-only/);
    expect(openUnder(ro.path)).toEqual([]);
    expect(src.running).toBe(false);
  });

  it.each<[number, PressureErrorCode, RegExp]>([
    [13, 'EBALLOON_PRESSURE_PERMISSION', /write access to \/x\/cgroup.event_control, as root: chown \S+ \/x\/cgroup.event_control/],
    [1, 'EBALLOON_PRESSURE_PERMISSION', /chown \S+ \/x\/cgroup.event_control/],
    [2, 'EBALLOON_PRESSURE_NOENT', /the memcg does not exist/],
    [5, 'EBALLOON_PRESSURE_REGISTER', /memory controller is mounted/],
  ])('errno %i maps to %s', (errno, code, hint) => {
    expectPressureError(openError('/x/cgroup.event_control', errno, 'memcg'), code, /cannot open \/x\/cgroup.event_control/, hint);
  });
});

describe('PressureSupervisor backoff (fake source and timers)', () => {
  function setup(failStarts: number) {
    const pending: Array<{ fn: () => void; ms: number }> = [];
    const timers: Timers = { setTimeout: (fn, ms) => pending.push({ fn, ms }), clearTimeout: () => { pending.length = 0; } };
    let starts = 0;
    let emit: ((ev: HostPressureEvent) => void) | null = null;
    let stale: ((ev: HostPressureEvent) => void) | null = null;
    let lose: ((err: Error) => void) | null = null;
    const source: PressureSource = {
      kind: 'vmpressure', description: 'fake', path: '/fake', get running() { return emit !== null; },
      start(onEvent, onError) {
        starts++;
        if (starts > 1 && starts <= 1 + failStarts) throw new Error(`down (${starts})`);
        emit = onEvent;
        stale = onEvent;
        lose = onError;
      },
      stop() { emit = null; },
    };
    const events: HostPressureEvent[] = [];
    const sup = new PressureSupervisor(source, null, (ev) => events.push(ev), silentLogger(), { minBackoffMs: 1000, maxBackoffMs: 8000, timers });
    return { sup, pending, events, emitNow: () => emit?.({ source: 'vmpressure', level: 'low', count: 1, path: '/fake' }),
      emitStale: () => stale!({ source: 'vmpressure', level: 'low', count: 1, path: '/fake' }), lose: () => lose!(new Error('gone')), starts: () => starts };
  }

  it('doubles the delay up to the maximum while the source stays down, then resets', () => {
    const t = setup(5);
    t.sup.start();
    t.lose();
    const delays: number[] = [];
    while (t.pending.length) {
      const next = t.pending.shift()!;
      delays.push(next.ms);
      next.fn();
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 8000, 8000]);
    expect(t.sup.state).toBe('running');
    expect(t.sup.failedRetries).toBe(5);
    t.lose();
    expect(t.pending.map((p) => p.ms)).toEqual([1000]);
  });

  it('the first start throws (a startup error); events flow; stop cancels a pending retry', () => {
    const source: PressureSource = { kind: 'psi', description: 'bad', path: '/x', running: false, start() { throw new Error('EBALLOON_PRESSURE_NOENT: /x'); }, stop() {} };
    expect(() => new PressureSupervisor(source, null, () => {}, silentLogger()).start()).toThrow(/NOENT/);
    const t = setup(0);
    t.sup.start();
    t.emitNow();
    expect(t.events).toHaveLength(1);
    t.lose();
    t.emitStale(); // a late callback from the lost source is not passed on
    expect(t.events).toHaveLength(1);
    expect(t.sup.state).toBe('retrying');
    t.sup.stop();
    expect(t.pending).toEqual([]);
    expect(t.sup.state).toBe('stopped');
  });
});
