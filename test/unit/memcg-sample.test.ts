// Reading a group for the host policy: the files of cgroup v1, cgroup v2 and
// /proc/meminfo, parsed from strings; which scope a VM's pressure plan gives.
import { describe, expect, it } from 'vitest';
import { DEFAULT_PSI_TRIGGER } from '../../src/pressure/psi.js';
import {
  parseCgroupNumber, parseMeminfo, parsePsiSomeAvg10, readScope, scopeOf, statField,
} from '../../src/service/memcg-sample.js';

const MiB = 2 ** 20;
const MEMINFO = 'MemTotal:        4194304 kB\nMemFree:  100 kB\nMemAvailable:    1048576 kB\n'; // 4 GiB, 1 GiB available
const PSI = 'some avg10=12.50 avg60=3.00 avg300=0.50 total=123\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=4\n';
const reader = (files: Record<string, string>) => (p: string) => {
  if (!(p in files)) throw new Error(`ENOENT: ${p}`);
  return files[p]!;
};

describe('parsing', () => {
  it.each([
    ['1048576\n', MiB], ['max\n', Infinity], ['9223372036854771712\n', Infinity], ['0', 0],
  ])('cgroup number %j', (text, n) => expect(parseCgroupNumber(text)).toBe(n));
  it('refuses what is not a number', () => expect(() => parseCgroupNumber('lots')).toThrow(/not a cgroup number/));
  it('memory.stat fields, PSI some avg10, /proc/meminfo', () => {
    expect(statField('cache 5\ntotal_inactive_file 4096\ninactive_file 1\n', 'total_inactive_file')).toBe(4096);
    expect(statField('cache 5\n', 'inactive_file')).toBe(0);
    expect(parsePsiSomeAvg10(PSI)).toBe(12.5);
    expect(parsePsiSomeAvg10('')).toBeNull();
    expect(parseMeminfo(MEMINFO)).toEqual({ totalBytes: 4 * 1024 * MiB, availableBytes: 1024 * MiB });
  });
});

describe('readScope', () => {
  it.each([
    ['v1: usage less inactive file against the limit', { kind: 'v1', dir: '/cg' } as const, {
      '/cg/memory.usage_in_bytes': String(900 * MiB), '/cg/memory.limit_in_bytes': String(1024 * MiB), '/cg/memory.stat': `total_inactive_file ${100 * MiB}\n`,
    }, { limitBytes: 1024 * MiB, usageBytes: 800 * MiB, rawUsageBytes: 900 * MiB, psiSomeAvg10: null }],
    ['v1 unlimited: the host RAM is the limit', { kind: 'v1', dir: '/cg' } as const, {
      '/cg/memory.usage_in_bytes': String(900 * MiB), '/cg/memory.limit_in_bytes': '9223372036854771712',
    }, { limitBytes: 4096 * MiB, usageBytes: 900 * MiB }],
    ['v2: memory.high when set', { kind: 'v2', dir: '/cg' } as const, {
      '/cg/memory.current': String(700 * MiB), '/cg/memory.high': String(800 * MiB), '/cg/memory.max': String(1024 * MiB), '/cg/memory.pressure': PSI,
      '/cg/memory.stat': `inactive_file ${50 * MiB}\n`,
    }, { limitBytes: 800 * MiB, usageBytes: 650 * MiB, psiSomeAvg10: 12.5, source: 'memory.current / memory.high' }],
    ['v2: memory.max when high is max', { kind: 'v2', dir: '/cg' } as const, {
      '/cg/memory.current': String(700 * MiB), '/cg/memory.high': 'max\n', '/cg/memory.max': String(1024 * MiB),
    }, { limitBytes: 1024 * MiB, usageBytes: 700 * MiB, source: 'memory.current / memory.max' }],
    ['cgroup2 group without the memory controller (hybrid): host memory, the group\'s PSI', { kind: 'v2', dir: '/cg' } as const, {
      '/cg/memory.pressure': PSI,
    }, { limitBytes: 4096 * MiB, usageBytes: 3072 * MiB, psiSomeAvg10: 12.5 }],
    ['system: MemTotal - MemAvailable, /proc/pressure/memory', { kind: 'system' } as const, {
      '/proc/pressure/memory': PSI,
    }, { limitBytes: 4096 * MiB, usageBytes: 3072 * MiB, psiSomeAvg10: 12.5 }],
  ])('%s', (_n, scope, files, expected) => {
    expect(readScope(scope, reader({ '/proc/meminfo': MEMINFO, ...files }))).toMatchObject(expected);
  });

  it('a group that is gone throws with its path', () => {
    expect(() => readScope({ kind: 'v1', dir: '/gone' }, reader({ '/proc/meminfo': MEMINFO }))).toThrow(/\/gone\/memory.usage_in_bytes/);
  });
});

describe('scopeOf', () => {
  const cfg = { kind: 'auto' as const, level: 'low' as const, psiTrigger: DEFAULT_PSI_TRIGGER };
  it.each([
    ['vmpressure: its memcg', { kind: 'vmpressure', memcg: '/sys/fs/cgroup/memory/m', level: 'low' }, {}, { kind: 'v1', dir: '/sys/fs/cgroup/memory/m' }],
    ['PSI on a group', { kind: 'psi', file: '/sys/fs/cgroup/m/memory.pressure', trigger: DEFAULT_PSI_TRIGGER }, {}, { kind: 'v2', dir: '/sys/fs/cgroup/m' }],
    ['system PSI', { kind: 'psi', file: '/proc/pressure/memory', trigger: DEFAULT_PSI_TRIGGER }, {}, { kind: 'system' }],
    ['none without --memcg: no group', { kind: 'none' }, {}, null],
    ['none with a v1 --memcg: sampled all the same', { kind: 'none' }, { memcg: '/v1/m' }, { kind: 'v1', dir: '/v1/m' }],
  ] as const)('%s', (_n, plan, extra, expected) => {
    expect(scopeOf(plan as never, { ...cfg, ...extra }, (p) => p === '/v1/m/memory.usage_in_bytes')).toEqual(expected);
  });
});
