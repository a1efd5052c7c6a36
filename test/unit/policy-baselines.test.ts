// MOM's and Proxmox's published rules, as our baselines (src/policy/baselines.ts).
import { describe, expect, it } from 'vitest';
import { momStep, proxmoxGoal, proxmoxStep, type BaselineVm } from '../../src/policy/baselines.js';
import { proxmoxShares } from '../../src/service/policy-runner.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const vm = (o: Partial<BaselineVm> & { vm: string }): BaselineVm => ({ ramBytes: 2 * GiB, sizeBytes: 2 * GiB, minBytes: 0, freeBytes: 1 * GiB, ...o });
const mib = (m: Map<string, number>) => Object.fromEntries([...m].map(([k, v]) => [k, Math.round(v / MiB)]));

describe('MOM', () => {
  it('host free below 20 %: every guest shrinks by 5 % per cycle, idle or not (its own comment: it does not prefer idle guests)', () => {
    const r = momStep({ totalBytes: 16 * GiB, freeBytes: 2 * GiB }, [vm({ vm: 'idle', freeBytes: 1800 * MiB }), vm({ vm: 'busy', freeBytes: 400 * MiB })]);
    expect(mib(r)).toEqual({ idle: 1946, busy: 1946 });
  });

  it('not below used + the free share (20 % of its size scaled by host pressure)', () => {
    // 10 % host free: free share 10 %; used 1900 MiB -> at least 1900 + 204.8.
    const r = momStep({ totalBytes: 10 * GiB, freeBytes: GiB }, [vm({ vm: 'a', freeBytes: 148 * MiB })]);
    expect(mib(r)).toEqual({}); // 2105 > 2048: no shrink
    const r2 = momStep({ totalBytes: 10 * GiB, freeBytes: GiB }, [vm({ vm: 'a', freeBytes: 400 * MiB })]);
    expect(mib(r2)).toEqual({ a: 1946 });
  });

  it('host free above 20 %: ballooned guests grow by 5 % per cycle up to their RAM', () => {
    const r = momStep({ totalBytes: 16 * GiB, freeBytes: 8 * GiB }, [vm({ vm: 'a', sizeBytes: 1024 * MiB, freeBytes: 512 * MiB }), vm({ vm: 'full' })]);
    expect(mib(r)).toEqual({ a: 1075 });
  });
});

describe('Proxmox', () => {
  it('the goal is the change to 80 % host use', () => {
    expect(proxmoxGoal({ totalBytes: 10 * GiB, freeBytes: GiB }) / MiB).toBeCloseTo(-1024, 0);
    expect(proxmoxGoal({ totalBytes: 10 * GiB, freeBytes: 5 * GiB }) / MiB).toBeCloseTo(3072, 0);
  });

  it('shrinks guests with free memory first, at most 100 MiB each per round; the others only if those could not move at all', () => {
    const host = { totalBytes: 10 * GiB, freeBytes: GiB };
    const r = proxmoxStep(host, [vm({ vm: 'roomy', minBytes: GiB, freeBytes: 900 * MiB }), vm({ vm: 'tight', minBytes: GiB, freeBytes: 100 * MiB })]);
    expect(mib(r)).toEqual({ roomy: 1948 });
    const stuck = proxmoxStep(host, [vm({ vm: 'roomy', sizeBytes: GiB, minBytes: GiB, freeBytes: 900 * MiB }), vm({ vm: 'tight', minBytes: GiB, freeBytes: 100 * MiB })]);
    expect(mib(stuck)).toEqual({ tight: 1948 });
  });

  it('guests without a minimum are left alone; growth goes to guests under pressure first', () => {
    const r = proxmoxStep({ totalBytes: 10 * GiB, freeBytes: 6 * GiB }, [
      vm({ vm: 'nomin', sizeBytes: GiB }), vm({ vm: 'pressed', sizeBytes: 1200 * MiB, minBytes: GiB, freeBytes: 10 * MiB }),
      vm({ vm: 'easy', sizeBytes: 1200 * MiB, minBytes: GiB, freeBytes: 600 * MiB }),
    ]);
    expect(mib(r)).toEqual({ pressed: 1300 });
  });

  it('small goals (under 10 MiB) change nothing', () => {
    expect(proxmoxStep({ totalBytes: 10 * GiB, freeBytes: 2 * GiB + 5 * MiB }, [vm({ vm: 'a', minBytes: GiB })]).size).toBe(0);
  });
});

describe('--weight under Proxmox', () => {
  it.each([
    [1, 1000], [2, 500], [4, 250], [0.5, 2000], [0, 0], [5000, 1],
  ] as const)('weight %s: shares %s', (w, shares) => expect(proxmoxShares(w)).toBe(shares));

  it('a larger weight gives more there too, as under the host policy', () => {
    // 2 GiB guests, 1 GiB minimum, goal -150 MiB: split by shares over what is above the minimum.
    const host = { totalBytes: 20 * GiB, freeBytes: 4 * GiB - 150 * MiB };
    const r = proxmoxStep(host, [
      vm({ vm: 'w1', minBytes: GiB, freeBytes: 900 * MiB, shares: proxmoxShares(1) }),
      vm({ vm: 'w4', minBytes: GiB, freeBytes: 900 * MiB, shares: proxmoxShares(4) }),
    ]);
    const given = (name: string) => 2 * GiB - (r.get(name) ?? 2 * GiB);
    expect(given('w4')).toBeGreaterThan(given('w1'));
  });
});
