// Pure parts of the policy benchmark (bench/policy/): arms and their daemon
// flags, paired order, need covered, expected shares, the guest's new lines.
import { describe, expect, it } from 'vitest';
import { ARMS, pairedOrder, parseRunsFor, pickArms, splitDaemonArgs, unknownFlags } from '../../bench/policy/arms.js';
import { coveredAfter, expectedSplit, medianRange, needOf, type Sample, shareErrors, spareOf, type VmResult } from '../../bench/policy/metrics.js';
import { buildQemuArgs, cacheRead, dataDiskName, guestOomKills, memCacheKiB, parseVubLine } from '../../lab/vm/index.js';

const table = { names: new Set(['page-reporting', 'step', 'weight', 'memcg', 'pressure']), booleans: new Set(['page-reporting']) };

describe('splitDaemonArgs', () => {
  const cases: Array<[string, string[], ReturnType<typeof splitDaemonArgs>]> = [
    ['nothing', [], { hostArgs: [], vmOptions: {} }],
    ['a host flag with a value stays on the command line', ['--policy', 'mom'], { hostArgs: ['--policy', 'mom'], vmOptions: {} }],
    ['device options go to the VM', ['--step', '64M', '--weight', '4'], { hostArgs: [], vmOptions: { step: '64M', weight: 4 } }],
    ['a negated boolean', ['--no-page-reporting'], { hostArgs: [], vmOptions: { 'page-reporting': false } }],
    ['flag=value', ['--step=16M', '--policy=seed'], { hostArgs: ['--policy', 'seed'], vmOptions: { step: '16M' } }],
    ['an unknown flag without a value', ['--verbose', '--step', '1M'], { hostArgs: ['--verbose'], vmOptions: { step: '1M' } }],
    ['paths stay strings', ['--memcg', '/sys/fs/cgroup/memory/x'], { hostArgs: [], vmOptions: { memcg: '/sys/fs/cgroup/memory/x' } }],
  ];
  it.each(cases)('%s', (_n, args, want) => expect(splitDaemonArgs(args, table)).toEqual(want));
  it('a device option without its value is an error', () => expect(() => splitDaemonArgs(['--step'], table)).toThrow(/needs a value/));
  it('a bare word is an error', () => expect(() => splitDaemonArgs(['mom'], table)).toThrow(/not a --flag/));
});

describe('arms', () => {
  it('every arm: vanilla arms have no daemon flags', () => {
    for (const a of Object.values(ARMS)) if (a.balloon === 'vanilla') expect(a.daemonArgs).toEqual([]);
  });
  it('pickArms keeps the order and names the known arms on error', () => {
    expect(pickArms('ours,vanilla').map((a) => a.name)).toEqual(['ours', 'vanilla']);
    expect(() => pickArms('vanilla,nope')).toThrow(/unknown arm 'nope' \(vanilla, /);
  });
  it.each([
    ['', {}],
    ['vanilla=5,ours=5', { vanilla: 5, ours: 5 }],
  ] as const)('parseRunsFor %j', (text, want) => expect(Object.fromEntries(parseRunsFor(text, ['vanilla', 'ours', 'seed']))).toEqual(want));

  it.each([
    ['mom=3', /mom is not one of --arms \(vanilla, ours\)/],
    ['ours=0', /expected ARM=N with N a whole number >= 1/],
    ['ours', /expected ARM=N/],
  ] as const)('parseRunsFor refuses %j with what to do', (text, msg) => expect(() => parseRunsFor(text, ['vanilla', 'ours'])).toThrow(msg));

  it('pairedOrder interleaves arms within each run', () => {
    expect(pairedOrder(['v', 'o'], 2)).toEqual([{ arm: 'v', run: 1 }, { arm: 'o', run: 1 }, { arm: 'v', run: 2 }, { arm: 'o', run: 2 }]);
  });
  it('pairedOrder with runs per arm: an arm with fewer runs drops out of the later rounds', () => {
    expect(pairedOrder(['v', 'o', 'm'], (a) => (a === 'm' ? 1 : 2)))
      .toEqual([{ arm: 'v', run: 1 }, { arm: 'o', run: 1 }, { arm: 'm', run: 1 }, { arm: 'v', run: 2 }, { arm: 'o', run: 2 }]);
  });
  it('unknownFlags: what --help does not list', () => {
    const help = '  --step  Balloon change\n  --page-reporting  Offer ...\n  --[no-]auto';
    expect(unknownFlags(['--policy', 'mom', '--step', '1M', '--no-page-reporting', '--no-auto'], help)).toEqual(['policy']);
  });
});

describe('need and cover', () => {
  it('needOf: baseline + squeeze - limit, at least 0', () => {
    expect(needOf(800, 700, 1400)).toBe(100);
    expect(needOf(500, 700, 1400)).toBe(0);
  });
  const s = (t: number, guest: string, balloonMiB: number): Sample => ({ t, guest, balloonMiB });
  const samples = [s(0, 'a', 0), s(0, 'b', 0), s(1, 'memcg swap', 500), s(2, 'a', 60), s(3, 'b', 30), s(4, 'a', 80)];
  it.each([
    ['the sum of the guests reaches the need', 90, 1, 2],
    ['later', 110, 1, 3],
    ['never', 200, 1, null],
    ['no host event', 90, null, null],
    ['no need', 0, 1, null],
  ] as const)('%s', (_n, need, first, want) => expect(coveredAfter(samples, ['a', 'b'], need, first)).toBe(want));
});

describe('expected shares', () => {
  it('in proportion to weight x spare when nobody is capped', () => {
    expect(expectedSplit(800, [400, 400, 400, 400], [1, 1, 2, 4])).toEqual([100, 100, 200, 400]);
  });
  it('a capped VM passes the rest on (water-filling)', () => {
    const got = expectedSplit(900, [400, 400, 400, 400], [1, 1, 2, 4]);
    expect(got[3]).toBe(400);
    expect(got.reduce((a, b) => a + b, 0)).toBeCloseTo(900);
    expect(got[2]).toBeCloseTo(250);
  });
  it('never more than all the spare', () => {
    expect(expectedSplit(1000, [100, 200], [1, 1])).toEqual([100, 200]);
  });
  it('spareOf: MemAvailable above the larger reserve', () => {
    expect(spareOf(450, 512, 10)).toBeCloseTo(398.8);
    expect(spareOf(450, 512, 10, 100)).toBe(350);
    expect(spareOf(null, 512, 10)).toBe(0);
  });
  it('shareErrors: relative error against the expected split', () => {
    const vm = (name: string, weight: number, balloonEndMiB: number): VmResult => ({ name, weight, ramMiB: 500, balloonEndMiB, balloonPeakMiB: balloonEndMiB,
      rssBeforeMiB: 0, rssEndMiB: 0, availBeforeMiB: 450, guestSwapOut: 0, guestOomKills: 0 });
    const r = shareErrors([vm('a', 1, 110), vm('b', 1, 90), vm('c', 2, 200), vm('d', 4, 400)], 10);
    expect(r.rows.map((x) => x.expected)).toEqual([0.125, 0.125, 0.25, 0.5]);
    expect(r.maxErrorPercent).toBeCloseTo(10);
  });
  it('shareErrors, backed spare: the RAM the host never backed is not spare', () => {
    // 500 MiB guests, MemAvailable 450, reserve 50: spare 400; d never had 300 MiB of its RAM backed (RssShmem 200): spare 100
    const vm = (name: string, weight: number, balloonEndMiB: number, rssBeforeMiB: number): VmResult => ({ name, weight, ramMiB: 500, balloonEndMiB,
      balloonPeakMiB: balloonEndMiB, rssBeforeMiB, rssEndMiB: 0, availBeforeMiB: 450, guestSwapOut: 0, guestOomKills: 0 });
    const vms = [vm('a', 1, 100, 500), vm('b', 1, 100, 500), vm('c', 2, 200, 500), vm('d', 4, 100, 200)];
    const all = shareErrors(vms, 10);
    const backed = shareErrors(vms, 10, true);
    expect(backed.rows.map((x) => x.spareMiB)).toEqual([400, 400, 400, 100]);
    // d capped at its 100: the other 400 split 1:1:2 -> 100, 100, 200: the balloons match exactly
    expect(backed.maxErrorPercent).toBeCloseTo(0);
    expect(all.maxErrorPercent).toBeGreaterThan(50);
  });
});

describe('guest lines for the benchmark', () => {
  const ev = (t: string) => parseVubLine(t) ?? (() => { throw new Error(t); })();
  it('meminfo Buffers and Cached; older lines have none', () => {
    expect(memCacheKiB(ev('VUB meminfo MemTotal=1 MemFree=1 MemAvailable=1 AnonPages=1 Shmem=1 Buffers=524288 Cached=2048 up=3'))).toEqual({ buffers: 524288, cached: 2048, up: 3 });
    expect(memCacheKiB(ev('VUB meminfo MemTotal=1 MemFree=1 MemAvailable=1 AnonPages=1 Shmem=1 up=3'))).toBeUndefined();
  });
  it('vmstat oom_kill', () => {
    expect(guestOomKills(ev('VUB vmstat pswpin=0 pswpout=0 oom_kill=2 up=1'))).toBe(2);
    expect(guestOomKills(ev('VUB vmstat pswpin=0 pswpout=0 up=1'))).toBeUndefined();
  });
  it('cache line', () => {
    expect(cacheRead(ev('VUB cache dev=vdb kib=524288 before=9000 after=533000 seconds=4.5'))).toEqual({ dev: 'vdb', kib: 524288, beforeKiB: 9000, afterKiB: 533000, seconds: 4.5 });
    expect(cacheRead(ev('VUB cache dev=vdb kib=x'))).toBeUndefined();
  });
  it('data disks after the swap disk, cache=none, named in that order', () => {
    const args = buildQemuArgs({ kernel: '/k', initrd: '/i', memMiB: 256, accel: { kind: 'tcg' }, qmpSocket: '/q', balloon: { kind: 'none' }, swapDisk: '/s', dataDisks: ['/d'] });
    const drives = args.filter((_, i) => args[i - 1] === '-drive');
    expect(drives).toEqual(['file=/s,if=none,id=swap0,format=raw,cache=none,aio=threads,discard=unmap', 'file=/d,if=none,id=data0,format=raw,cache=none,aio=threads']);
    expect([dataDiskName(0, true), dataDiskName(0, false), dataDiskName(1, true)]).toEqual(['vdb', 'vda', 'vdc']);
  });
});

describe('medianRange', () => {
  const cases: Array<[string, Array<number | null>, ReturnType<typeof medianRange>]> = [
    ['odd count', [3, 1, 2], { median: 2, min: 1, max: 3, n: 3 }],
    ['even count', [4, 1, 3, 2], { median: 2.5, min: 1, max: 4, n: 4 }],
    ['missing values are left out', [null, 5, null], { median: 5, min: 5, max: 5, n: 1 }],
    ['nothing', [], { median: NaN, min: NaN, max: NaN, n: 0 }],
  ];
  it.each(cases)('%s', (_n, xs, want) => expect(medianRange(xs)).toEqual(want));
});
