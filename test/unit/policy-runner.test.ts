// The host-wide runner with fake VMs and a fake cgroup: when it reads, what
// it asks whom, stale stats, exclusions, give-back, the baselines' rounds,
// one decision per event however many VMs share it, and its history.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { HostView } from '../../src/control/controller.js';
import { createLogger } from '../../src/log.js';
import type { HostShareInfo } from '../../src/policy/types.js';
import type { HostPressureEvent } from '../../src/pressure/types.js';
import { MOVE_SETTLE_MS, PolicyRunner, type RunnerVm, STATS_WAIT_MS } from '../../src/service/policy-runner.js';

const MiB = 2 ** 20;
const CG = '/fake/machine.slice';

class FakeVm implements RunnerVm {
  view: HostView;
  readonly targets: Array<{ bytes: number; event: string; host?: HostShareInfo }> = [];
  readonly controller = {
    hostView: () => ({ ...this.view }),
    hostTarget: (bytes: number, event: string, _reason: string, host?: HostShareInfo) => {
      this.targets.push({ bytes, event, ...(host ? { host } : {}) });
      const old = this.view.targetBytes;
      this.view.targetBytes = Math.min(bytes, this.view.ceilingBytes);
      return { at: 0, rule: 'host-policy-inflate', cause: null, ignored: false, event, oldTargetPages: old / 4096, newTargetPages: this.view.targetBytes / 4096, reason: '' } as never;
    },
  };
  constructor(readonly name: string, over: Partial<HostView> = {}, readonly statsIntervalMs = 5000) {
    this.view = {
      vm: name, connected: true, policy: 'host', auto: true, inGuestPressure: false, weight: 1, reserveBytes: 0, stepBytes: 32 * MiB, floorBytes: 0,
      ramBytes: 1024 * MiB, balloonBytes: 0, targetBytes: 0, ceilingBytes: 1024 * MiB,
      stats: { availableBytes: 700 * MiB, cachesBytes: 100 * MiB, freeBytes: 600 * MiB }, statsAgeMs: 1000, useBps: 0, backedBytes: null, recentUse: [], ...over,
    };
  }
  /** The guest reaches its target. */
  follow(): void {
    this.view.balloonBytes = this.view.targetBytes;
  }
}

function rig(usageMiB: number, limitMiB = 2048) {
  let now = 0;
  const files = new Map<string, string>([
    ['/proc/meminfo', 'MemTotal:       25165824 kB\nMemAvailable:   20000000 kB\n'],
    [`${CG}/memory.usage_in_bytes`, String(usageMiB * MiB)],
    [`${CG}/memory.limit_in_bytes`, String(limitMiB * MiB)],
    [`${CG}/memory.stat`, 'cache 0\ntotal_inactive_file 0\n'],
  ]);
  const read = (p: string) => {
    const v = files.get(p);
    if (v === undefined) throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
    return v;
  };
  const runner = new PolicyRunner({ intervalMs: 1000, log: createLogger('fatal'), now: () => now, read });
  return {
    runner, files,
    at: (ms: number) => { now = ms; },
    usage: (mib: number) => files.set(`${CG}/memory.usage_in_bytes`, String(mib * MiB)),
  };
}

const ev = (): HostPressureEvent => ({ source: 'vmpressure', level: 'low', count: 1, wokeAt: 0n } as HostPressureEvent);
let stops: Array<() => void> = [];
afterEach(() => {
  for (const s of stops.splice(0)) s();
});

describe('policy runner', () => {
  it('one pressure event asks for the whole need at once, in steps, split by weight; shared events decide once', () => {
    // limit 2 GiB: headroom max(10 %, 128 MiB) = 204.8 MiB; usage 1948 MiB -> 100 MiB free -> need ~105 MiB:
    // 26 + 79 by weight, in 32 MiB steps to the nearest step: 32 + 64.
    const r = rig(1948);
    stops.push(() => r.runner.stop());
    const noCache = { stats: { availableBytes: 700 * MiB, freeBytes: 700 * MiB } };
    const a = new FakeVm('a', noCache);
    const b = new FakeVm('b', { ...noCache, weight: 3 });
    r.runner.add(a, { kind: 'v1', dir: CG });
    r.runner.add(b, { kind: 'v1', dir: CG });
    const e = ev();
    r.runner.pressure(a, e);
    r.runner.pressure(b, e); // the same event, fanned out: no second decision
    expect(a.targets.map((t) => t.bytes / MiB)).toEqual([32]);
    expect(b.targets.map((t) => t.bytes / MiB)).toEqual([64]);
    expect(b.targets[0]!.host).toMatchObject({ policy: 'host', weight: 3, shareBytes: 64 * MiB, stale: false });
    const d = r.runner.decisions.last();
    expect(d).toHaveLength(1);
    expect(d[0]).toMatchObject({ policy: 'host', trigger: 'pressure vmpressure low', group: `memcg ${CG}` });
    expect(d[0]!.vms.map((v) => [v.vm, v.shareBytes / MiB])).toEqual([['a', 32], ['b', 64]]);
    // Asked and not done yet: it counts against the need; the next sample asks nothing more.
    r.at(1000);
    r.runner.tick();
    expect([a.targets.length, b.targets.length]).toEqual([1, 1]);
  });

  it('reclaimable cache goes first: a guest with cache gives before a heavier one with only free memory', () => {
    const r = rig(1948);
    stops.push(() => r.runner.stop());
    const cache = new FakeVm('cache', { stats: { availableBytes: 700 * MiB, cachesBytes: 400 * MiB, freeBytes: 300 * MiB } });
    const free = new FakeVm('free', { weight: 4, stats: { availableBytes: 700 * MiB, cachesBytes: 0, freeBytes: 700 * MiB } });
    r.runner.add(cache, { kind: 'v1', dir: CG });
    r.runner.add(free, { kind: 'v1', dir: CG });
    r.runner.tick();
    expect(cache.targets.map((t) => t.bytes / MiB)).toEqual([96]); // ~105 MiB to the nearest step
    expect(free.targets).toEqual([]);
  });

  it('a VM with stale stats gives one step per interval; excluded VMs are left alone', () => {
    const r = rig(2000);
    stops.push(() => r.runner.stop());
    const stale = new FakeVm('stale', { stats: null, statsAgeMs: null });
    const pressured = new FakeVm('pressured', { inGuestPressure: true });
    const manual = new FakeVm('manual', { auto: false });
    for (const v of [stale, pressured, manual]) r.runner.add(v, { kind: 'v1', dir: CG });
    r.runner.tick();
    expect(stale.targets.map((t) => t.bytes / MiB)).toEqual([32]);
    stale.follow();
    r.at(500);
    r.runner.pressure(stale, ev()); // within the interval: no second step
    expect(stale.targets).toHaveLength(1);
    r.at(1000);
    r.runner.tick();
    expect(stale.targets.map((t) => t.bytes / MiB)).toEqual([32, 64]);
    expect([pressured.targets, manual.targets]).toEqual([[], []]);
    const rows = r.runner.decisions.last()[0]!.vms;
    expect(rows.find((v) => v.vm === 'pressured')!.excluded).toBe('guest pressure (hysteresis)');
    expect(rows.find((v) => v.vm === 'manual')!.excluded).toBe('manual or auto off');
  });

  it('room for long enough gives back gradually; seed VMs and unconnected groups are not touched', () => {
    const r = rig(1000); // 1 GiB free of 2 GiB: more than 2x the headroom
    stops.push(() => r.runner.stop());
    const a = new FakeVm('a', { balloonBytes: 256 * MiB, targetBytes: 256 * MiB });
    const seed = new FakeVm('seed', { policy: 'seed', balloonBytes: 256 * MiB, targetBytes: 256 * MiB });
    r.runner.add(a, { kind: 'v1', dir: CG });
    r.runner.add(seed, { kind: 'v1', dir: CG });
    for (let t = 0; t <= 30_000; t += 1000) {
      r.at(t);
      r.runner.tick();
    }
    expect(a.targets.map((t) => t.bytes / MiB)).toEqual([192]); // 64 MiB back after 30 s of room
    expect(seed.targets).toEqual([]);
    const off = new FakeVm('off', { connected: false });
    const r2 = rig(2040);
    stops.push(() => r2.runner.stop());
    r2.runner.add(off, { kind: 'v1', dir: CG });
    r2.files.clear(); // would throw if read
    r2.runner.tick();
    expect(r2.runner.status()[0]).toMatchObject({ reading: null, error: null });
  });

  it('a round that fails is logged, not thrown: the daemon and the other groups go on', () => {
    const r = rig(2040);
    stops.push(() => r.runner.stop());
    const a = new FakeVm('a');
    a.controller.hostTarget = () => { throw new Error('boom'); };
    r.runner.add(a, { kind: 'v1', dir: CG });
    expect(() => r.runner.pressure(a, ev())).not.toThrow();
  });

  it('an unreadable memcg changes nothing and says so in status', () => {
    const r = rig(2040);
    stops.push(() => r.runner.stop());
    const a = new FakeVm('a');
    r.runner.add(a, { kind: 'v1', dir: CG });
    r.files.delete(`${CG}/memory.usage_in_bytes`);
    r.runner.tick();
    expect(a.targets).toEqual([]);
    expect(r.runner.status()[0]!.error).toMatch(/ENOENT: .*memory.usage_in_bytes/);
  });

  it.each([
    // MOM: host free 5 % (< 20 %): every guest shrinks by 5 % of its size per 15 s round.
    ['mom', 1946, 15_000, [51.2]],
    // Proxmox: 95 % used, goal -15 % of 2 GiB: at most 100 MiB per VM per 10 s round.
    ['proxmox', 1946, 10_000, [100]],
  ] as const)('%s runs its own rounds on its own interval', (policy, usage, every, firstMiB) => {
    const r = rig(usage);
    stops.push(() => r.runner.stop());
    const a = new FakeVm('a', { policy, floorBytes: 256 * MiB });
    r.runner.add(a, { kind: 'v1', dir: CG });
    r.runner.pressure(a, ev()); // baselines do not react to events
    expect(a.targets).toEqual([]);
    r.runner.tick();
    expect(a.targets.map((t) => Math.round((t.bytes / MiB) * 10) / 10)).toEqual(firstMiB);
    expect(a.targets[0]!.event).toBe(`${policy} round`);
    a.follow();
    r.at(every - 1);
    r.runner.tick();
    expect(a.targets).toHaveLength(1);
    r.at(every);
    r.runner.tick();
    expect(a.targets).toHaveLength(2);
    expect(r.runner.decisions.last().every((d) => d.policy === policy && d.trigger === 'round')).toBe(true);
  });

  it('before inflating on old stats it asks for fresh ones and decides on them: a guest that began to use its memory is left alone', () => {
    vi.useFakeTimers();
    stops.push(() => vi.useRealTimers());
    const r = rig(1948);
    stops.push(() => r.runner.stop());
    const noCache = { stats: { availableBytes: 700 * MiB, freeBytes: 700 * MiB }, statsAgeMs: 4000 };
    const idle = new FakeVm('idle', noCache);
    const grows = new FakeVm('grows', noCache);
    const asked: string[] = [];
    // The fresh stats: 'grows' used 200 MiB since its last sample.
    idle.refreshStats = () => { asked.push('idle'); idle.view.statsAgeMs = 5; return true; };
    grows.refreshStats = () => {
      asked.push('grows');
      Object.assign(grows.view, { statsAgeMs: 5, useBps: 50 * MiB, stats: { availableBytes: 500 * MiB, freeBytes: 500 * MiB } });
      return true;
    };
    r.runner.add(idle, { kind: 'v1', dir: CG });
    r.runner.add(grows, { kind: 'v1', dir: CG });
    r.runner.pressure(idle, ev());
    expect(asked.sort()).toEqual(['grows', 'idle']);
    expect([...idle.targets, ...grows.targets]).toEqual([]); // nothing on the old stats
    r.runner.tick(); // a sample while the fresh stats are awaited decides nothing either
    r.runner.pressure(idle, ev());
    expect([...idle.targets, ...grows.targets]).toEqual([]);
    r.at(STATS_WAIT_MS);
    vi.advanceTimersByTime(STATS_WAIT_MS);
    expect(idle.targets.map((t) => t.bytes / MiB)).toEqual([96]);
    expect(idle.targets[0]!.event).toMatch(/fresh stats/);
    expect(grows.targets).toEqual([]); // 10 s at 50 MiB/s: nothing to spare
    // Fresh stats now: the next event decides at once, without asking again.
    r.usage(1948 + 200);
    r.runner.pressure(idle, ev());
    expect(asked).toHaveLength(2);
  });

  it('rebalances once the need is met, then asks for fresh stats so the next move need not wait a stats interval', () => {
    vi.useFakeTimers();
    stops.push(() => vi.useRealTimers());
    // limit 2 GiB, 348 MiB free: the headroom (204.8 MiB) holds, not twice of it (no give-back).
    const r = rig(1700);
    stops.push(() => r.runner.stop());
    const ahead = new FakeVm('ahead', { balloonBytes: 256 * MiB, targetBytes: 256 * MiB, stats: { availableBytes: 300 * MiB, freeBytes: 300 * MiB } });
    const behind = new FakeVm('behind', { stats: { availableBytes: 500 * MiB, freeBytes: 500 * MiB } });
    const asked: string[] = [];
    // Their regular stats were sampled at 9 s (5 s apart); refreshStats brings a sample of now.
    let refreshed = false;
    for (const v of [ahead, behind]) v.refreshStats = () => { asked.push(v.name); refreshed = true; return true; };
    const statsAt = (ms: number) => { for (const v of [ahead, behind]) v.view.statsAgeMs = Math.max(5, ms - 9_000); };
    r.runner.add(ahead, { kind: 'v1', dir: CG });
    r.runner.add(behind, { kind: 'v1', dir: CG });
    r.runner.tick();
    r.at(9_000);
    r.runner.tick();
    expect([...ahead.targets, ...behind.targets]).toEqual([]); // not before --rebalance-after (10 s)
    r.at(10_000);
    r.runner.tick();
    expect(ahead.targets.map((t) => t.bytes / MiB)).toEqual([192]);
    expect(behind.targets.map((t) => t.bytes / MiB)).toEqual([64]);
    expect(r.runner.status()[0]!.lastDecision!.reason).toMatch(/rebalance: ahead holds 256 MiB .* 64 MiB moves from ahead to behind/);
    ahead.follow();
    behind.follow();
    // Stats sampled before the move: no second move on them.
    r.at(11_000);
    statsAt(11_000);
    r.runner.tick();
    expect(behind.targets).toHaveLength(1);
    // The runner asked for fresh stats once the balloons had moved; on them the next move comes at once.
    vi.advanceTimersByTime(MOVE_SETTLE_MS);
    expect(asked.sort()).toEqual(['ahead', 'behind']);
    r.at(11_500);
    statsAt(refreshed ? 9_000 : 11_500);
    r.runner.tick();
    expect(behind.targets.map((t) => t.bytes / MiB)).toEqual([64, 128]);
    expect(ahead.targets.map((t) => t.bytes / MiB)).toEqual([192, 128]);
  });

  it('stats that are fresh enough are not refreshed: the decision is immediate', () => {
    const r = rig(1948);
    stops.push(() => r.runner.stop());
    const a = new FakeVm('a', { statsAgeMs: 500 });
    let asked = 0;
    a.refreshStats = () => { asked++; return true; };
    r.runner.add(a, { kind: 'v1', dir: CG });
    r.runner.pressure(a, ev());
    expect(asked).toBe(0);
    expect(a.targets).toHaveLength(1);
  });
});
