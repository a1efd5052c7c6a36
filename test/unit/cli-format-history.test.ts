import { describe, expect, it } from 'vitest';
import { hostDecisionsText } from '../../src/cli/format.js';
import type { HostDecisionRecord } from '../../src/control/status.js';

const MiB = 2 ** 20;
type Row = HostDecisionRecord['vms'][number];

function record(row: Partial<Row>): HostDecisionRecord {
  return {
    seq: 7, time: '2026-12-02T10:00:00.000Z', group: '/sys/fs/cgroup/memory/vms', policy: 'host', trigger: 'sample',
    needBytes: 64 * MiB, headroomBytes: 32 * MiB, freeBytes: 0, limitBytes: 1024 * MiB, usageBytes: 1000 * MiB, growthBps: 0,
    psiSomeAvg10: null, outstandingBytes: 0, reason: 'host need', count: 1,
    vms: [{
      vm: 'w1', weight: 1, spareBytes: 100 * MiB, cacheSpareBytes: 0, stale: false, excluded: null,
      shareBytes: 32 * MiB, oldTargetBytes: 0, newTargetBytes: 32 * MiB, ...row,
    }],
  };
}

/** The note column of the VM's row. */
const noteOf = (row: Partial<Row>) => hostDecisionsText([record(row)]).split('\n').at(-1)!.replace(/^.*?\+32 MiB\s+0 B -> 32 MiB\s*/, '');

describe('balloonctl history: the per-VM note', () => {
  it.each([
    ['nothing unbacked: no note', {}, ''],
    ['unbacked free memory the guest never touched', { unbackedBytes: 108 * MiB }, '108 MiB free never backed'],
    ['part of it given back by the balloon: said, and that it counts in the share', { unbackedBytes: 172 * MiB, returnedBytes: 64 * MiB },
      '172 MiB free unbacked (64 MiB of it given back by the balloon, counted in its weighted share)'],
    ['a share asked for the unbacked memory', { unbackedBytes: 108 * MiB, shareUnbackedBytes: 16 * MiB }, 'of the share 16 MiB for 108 MiB never backed'],
    ['stale stats win over the rest', { stale: true, unbackedBytes: 108 * MiB }, 'stats stale: one step at most'],
    ['just-freed memory', { freshFreeBytes: 48 * MiB }, '48 MiB just freed, not spare yet'],
    ['an excluded VM says why', { excluded: 'no frontend', unbackedBytes: 108 * MiB }, 'no frontend'],
  ] as const)('%s', (_name, row, note) => {
    expect(noteOf(row)).toBe(note);
  });

  it('prints the need, the memcg and each VM row', () => {
    const text = hostDecisionsText([record({ unbackedBytes: 108 * MiB })]);
    expect(text).toContain('2026-12-02 10:00:00Z  #7 host sample  /sys/fs/cgroup/memory/vms: need 64 MiB (usage 1000 MiB of 1 GiB, headroom 32 MiB)');
    expect(text).toMatch(/^ {2}w1\s+1\s+100 MiB\s+0 B\s+\+32 MiB\s+0 B -> 32 MiB\s+108 MiB free never backed$/m);
  });
});
