import { describe, expect, it } from 'vitest';
import { parseSummary } from '../../bench/device/prom.js';
import { type DeviceResult, median, NOTE, procCpuTicks, renderTable } from '../../bench/device/report.js';

const MiB = 2 ** 20;

describe('median', () => {
  it.each([[[3, 1, 2], 2], [[4, 1, 3, 2], 2.5], [[5], 5]] as Array<[number[], number]>)('%j', (xs, want) => expect(median(xs)).toBe(want));
  it('of nothing is NaN', () => expect(median([])).toBeNaN());
});

describe('procCpuTicks', () => {
  it('adds utime and stime (fields 14 and 15), comm with spaces and parens', () => {
    const line = '42 (node (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 11 0 1000 100000 5000';
    expect(procCpuTicks(line)).toBe(325);
  });
  it('refuses a truncated line', () => expect(() => procCpuTicks('1 (x) S 1 2')).toThrow());
});

describe('parseSummary', () => {
  const text = [
    '# HELP s x', '# TYPE s summary',
    's{quantile="0.5",vm="bench"} 0.0002', 's{quantile="0.9",vm="bench"} 0.0004', 's{quantile="0.99",vm="bench"} 0.0009',
    's_sum{vm="bench"} 0.05', 's_count{vm="bench"} 201', 'other_count 7', 's_total_count 3',
  ].join('\n');
  it('reads count, sum and the quantiles of one summary only', () => {
    expect(parseSummary(text, 's')).toEqual({ count: 201, sum: 0.05, quantiles: { '0.5': 0.0002, '0.9': 0.0004, '0.99': 0.0009 } });
  });
  it('null when the metric is not there', () => expect(parseSummary(text, 'absent')).toBeNull());
});

describe('renderTable', () => {
  const proc = { vmRssKiB: 61_440, rssAnonKiB: 40_960, rssFileKiB: 19_456, rssShmemKiB: 1024, cpuSeconds: 0.03, onCpuSeconds: 0.0312, cpuPercent: 0.312 };
  const result = (device: 'ours' | 'stock'): DeviceResult => ({
    device,
    runs: [1, 2, 3].map((run) => ({
      run, inflateSeconds: run, deflateSeconds: run / 2, memfdBeforeBytes: 900 * MiB, memfdAfterBytes: 388 * MiB,
      freedBytes: 512 * MiB, rssShmemBeforeKiB: 0, rssShmemAfterKiB: 0,
    })),
    targetChange: { what: 'x', samples: 200, p50Seconds: 0.0004, p99Seconds: 0.0021 },
    pressure: device === 'ours'
      ? { samples: 150, p50Seconds: 0.00012, p90Seconds: 0.0002, p99Seconds: 0.0008, sumSeconds: 0.02, status: { count: 150, p50Seconds: 0.00012, p99Seconds: 0.0008 }, hostEvents: 9000, rounds: 20, seconds: 60 }
      : null,
    idle: { seconds: 10, daemon: device === 'ours' ? proc : null, qemu: proc },
  });
  const table = renderTable({ guestMiB: 1024, balloonMiB: 512, runs: 3, idleSeconds: 10, ours: result('ours'), stock: result('stock') });
  const lines = table.split('\n');
  const row = (label: string) => lines.find((l) => l.startsWith(label)) ?? '';

  it('heads the columns ours, then stock, and ends with what was measured', () => {
    expect(lines[0]).toMatch(/^device benchmark, 1 GiB TCG guest, 512 MiB +ours \(vhost-user\) +stock virtio-balloon-pci$/);
    expect(lines.at(-1)).toBe(NOTE);
  });
  it('medians and each run', () => {
    expect(row('inflate 512 MiB (median of 3)')).toMatch(/2\.00 s +2\.00 s$/);
    expect(row('  each run')).toMatch(/1\.00 \/ 2\.00 \/ 3\.00 s/);
    expect(row('host memory freed by the inflate (median)')).toMatch(/512 MiB +512 MiB$/);
  });
  it('stock has no pressure source and no daemon', () => {
    expect(row('host pressure -> CONFIG_CHANGE p50 / p99')).toMatch(/0\.120 \/ 0\.800 ms \(n=150\) +n\/a \(no pressure source\)$/);
    expect(row('daemon RSS (VmRSS)')).toMatch(/60\.0 MiB \(anon 40\.0, file 19\.0, shmem 1\.0\) +n\/a \(no extra process\)$/);
    expect(row('daemon CPU, guest idle 10 s')).toMatch(/0\.31 % of a core \(31\.2 ms on CPU; utime\+stime 30 ms\) +n\/a \(no extra process\)$/);
    expect(row('operator target change round trip p50 / p99')).toMatch(/0\.400 \/ 2\.10 ms \(n=200\) +0\.400 \/ 2\.10 ms \(n=200\)$/);
  });
  it('a device left out is "not run"', () => {
    const only = renderTable({ guestMiB: 1024, balloonMiB: 512, runs: 3, idleSeconds: 10, ours: result('ours'), stock: null });
    expect(only.split('\n')[1]).toMatch(/not run$/);
  });
});
