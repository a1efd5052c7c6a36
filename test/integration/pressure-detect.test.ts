// Choosing the source on this machine, and the startup errors: a missing
// path, a missing controller or a permission problem names the path and what
// to do (EBALLOON_PRESSURE_*), never a silent no-op. Real cgroup paths; the
// permission case uses a read-only bind mount of a real memcg (EROFS).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BalloonError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { DEFAULT_PRESSURE, describePlan, parseMounts, planPressure, PressureConfig } from '../../src/pressure/detect.js';
import { isPressureError, openError, PressureErrorCode } from '../../src/pressure/errors.js';
import { PsiSource } from '../../src/pressure/psi.js';
import { PressureSupervisor, Timers } from '../../src/pressure/supervisor.js';
import type { HostPressureEvent, PressureSource } from '../../src/pressure/types.js';
import { VmpressureSource } from '../../src/pressure/vmpressure.js';
import { EpollLoop } from '../../src/transport/event-loop.js';
import {
  cleanupLeftovers, haveUnifiedPsi, haveV1Memory, isRoot, makeCgroup, roMountDir, TestCgroup, UNIFIED, V1_MEMORY,
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

describe('parseMounts', () => {
  it('finds the v1 memory hierarchy and cgroup2, unescaping mount points', () => {
    const text = [
      'cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0',
      'cgroup /sys/fs/cgroup/my\\040memory cgroup rw,relatime,memory 0 0',
      'cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0',
    ].join('\n');
    expect(parseMounts(text)).toEqual({ v1Memory: '/sys/fs/cgroup/my memory', unified: '/sys/fs/cgroup/unified' });
    expect(parseMounts('')).toEqual({ v1Memory: null, unified: null });
  });

  it.skipIf(!haveV1Memory)('on this machine: v1 memory at /sys/fs/cgroup/memory, cgroup2 at /sys/fs/cgroup/unified', () => {
    expect(parseMounts(readFileSync('/proc/self/mounts', 'utf8'))).toEqual({ v1Memory: V1_MEMORY, unified: UNIFIED });
  });
});

describe.skipIf(!isRoot || !haveV1Memory || !haveUnifiedPsi)('planPressure on this machine', () => {
  let cg: TestCgroup;
  beforeAll(async () => {
    await cleanupLeftovers();
    cg = makeCgroup({ v2: true });
  });
  afterAll(async () => {
    await cg?.remove();
  });

  it.each<[string, Partial<PressureConfig>, () => object]>([
    ['auto without --memcg: the root v1 memcg, as in the seed', {}, () => ({ kind: 'vmpressure', memcg: V1_MEMORY, level: 'low' })],
    ['auto with a v1 memcg', { memcg: 'V1' }, () => ({ kind: 'vmpressure', memcg: cg.v1 })],
    ['auto with a cgroup2 group', { memcg: 'V2' }, () => ({ kind: 'psi', file: join(cg.v2!, 'memory.pressure') })],
    ['explicit vmpressure, level and mode kept', { kind: 'vmpressure', memcg: 'V1', level: 'critical', mode: 'hierarchy' },
      () => ({ kind: 'vmpressure', memcg: cg.v1, level: 'critical', mode: 'hierarchy' })],
    ['explicit psi without --memcg: system-wide', { kind: 'psi' }, () => ({ kind: 'psi', file: '/proc/pressure/memory' })],
    ['none', { kind: 'none', memcg: '/nowhere' }, () => ({ kind: 'none' })],
  ])('%s', (_n, over, expected) => {
    const memcg = over.memcg === 'V1' ? cg.v1 : over.memcg === 'V2' ? cg.v2! : over.memcg;
    expect(planPressure(cfg({ ...over, ...(memcg ? { memcg } : {}) }))).toMatchObject(expected());
  });

  it('describePlan says what is watched', () => {
    expect(describePlan(planPressure(cfg({ memcg: cg.v1, mode: 'hierarchy' })))).toBe(`vmpressure low,hierarchy on ${cg.v1}`);
    expect(describePlan(planPressure(cfg({ kind: 'psi' })))).toBe('psi "some 100000 2000000" on /proc/pressure/memory');
  });

  it.each<[string, () => Partial<PressureConfig>, PressureErrorCode, RegExp, RegExp]>([
    ['a missing memcg (vmpressure)', () => ({ kind: 'vmpressure', memcg: `${V1_MEMORY}/vub-missing` }), 'EBALLOON_PRESSURE_NOENT',
      /^EBALLOON_PRESSURE_NOENT: \/sys\/fs\/cgroup\/memory\/vub-missing does not exist$/, /give --memcg the directory of a cgroup v1 memory cgroup/],
    ['a missing path (auto)', () => ({ memcg: '/sys/fs/cgroup/vub-missing' }), 'EBALLOON_PRESSURE_NOENT',
      /\/sys\/fs\/cgroup\/vub-missing does not exist/, /check --memcg/],
    ['a cgroup2 group given to vmpressure', () => ({ kind: 'vmpressure', memcg: cg.v2! }), 'EBALLOON_PRESSURE_CONTROLLER',
      /has no memory.pressure_level: not a cgroup v1 memory cgroup/, /cgroup v2 directory: use --pressure psi/],
    ['a v1 cpu cgroup given to vmpressure', () => ({ kind: 'vmpressure', memcg: '/sys/fs/cgroup/cpu' }), 'EBALLOON_PRESSURE_CONTROLLER',
      /^EBALLOON_PRESSURE_CONTROLLER: \/sys\/fs\/cgroup\/cpu has no memory.pressure_level/, /under the v1 memory mount/],
    ['a v1 memcg given to psi', () => ({ kind: 'psi', memcg: cg.v1 }), 'EBALLOON_PRESSURE_CONTROLLER',
      /is a cgroup v1 memory cgroup: it has no memory.pressure/, /use --pressure vmpressure/],
    ['a directory that is neither (auto)', () => ({ memcg: '/sys/fs/cgroup/cpu' }), 'EBALLOON_PRESSURE_CONTROLLER',
      /neither a cgroup v1 memcg \(memory.pressure_level\) nor a cgroup v2 group \(memory.pressure\)/, /choose --pressure vmpressure\|psi\|none/],
  ])('%s is a startup error naming the path', (_n, over, code, message, hint) => {
    expectPressureError(thrown(() => planPressure(cfg(over()))), code, message, hint);
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

describe.skipIf(!isRoot || !haveV1Memory)('sources starting on bad paths', () => {
  let loop: EpollLoop;
  let cg: TestCgroup;
  let ro: string;
  beforeAll(async () => {
    await cleanupLeftovers();
    loop = new EpollLoop();
    cg = makeCgroup();
    // The same memcg through a read-only bind mount: opening cgroup.event_control for writing fails with EROFS.
    ro = roMountDir();
    mkdirSync(ro);
    execFileSync('mount', ['--bind', cg.v1, ro]);
    execFileSync('mount', ['-o', 'remount,bind,ro', ro]);
  });
  afterAll(async () => {
    try {
      execFileSync('umount', [ro]);
      rmdirSync(ro);
    } finally {
      loop?.close();
      await cg?.remove();
    }
  });

  it('vmpressure on a memcg that vanished before start: NOENT naming memory.pressure_level', () => {
    const src = new VmpressureSource(loop, `${V1_MEMORY}/vub-missing`);
    expectPressureError(thrown(() => src.start(() => {}, () => {})), 'EBALLOON_PRESSURE_NOENT',
      /cannot open \/sys\/fs\/cgroup\/memory\/vub-missing\/memory.pressure_level: No such file or directory/, /check --memcg/);
    expect(src.running).toBe(false);
  });

  it('a read-only cgroup mount: PERMISSION naming cgroup.event_control, nothing left open', () => {
    // What our fds point at (the level file was opened, then the control file failed).
    const openOnMemcg = () => readdirSync('/proc/self/fd').flatMap((fd) => {
      try {
        return [readlinkSync(`/proc/self/fd/${fd}`)];
      } catch {
        return [];
      }
    }).filter((target) => target.startsWith(ro));
    const src = new VmpressureSource(loop, ro);
    expectPressureError(thrown(() => src.start(() => {}, () => {})), 'EBALLOON_PRESSURE_PERMISSION',
      new RegExp(`cannot open ${ro}/cgroup.event_control: Read-only file system`), /mounted read-only/);
    expect(openOnMemcg()).toEqual([]);
  });

  it.skipIf(!haveUnifiedPsi)('psi on a missing cgroup2 group: NOENT', () => {
    const src = new PsiSource(loop, `${UNIFIED}/vub-missing/memory.pressure`);
    expectPressureError(thrown(() => src.start(() => {}, () => {})), 'EBALLOON_PRESSURE_NOENT', /cannot open .*vub-missing\/memory.pressure/, /cgroup v2 directory/);
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
