import { describe, expect, it } from 'vitest';
import { bizzyResult, kernelCmdline, parseVubLine } from '../../lab/vm/index.js';

const line = (s: string) => {
  const e = parseVubLine(s);
  if (!e) throw new Error(`not a VUB line: ${s}`);
  return e;
};

describe('bizzyResult', () => {
  const ok = 'VUB bizzy chunks=32 chunk_kib=1024 threads=1 seconds=3 records=1765 rps=588 found=439 alloc_ms=34 elapsed=3.00 up=12.75';
  const cases: Array<[string, string, ReturnType<typeof bizzyResult>]> = [
    ['a finished run', ok, {
      ok: true,
      run: { chunks: 32, chunkKiB: 1024, threads: 1, seconds: 3, records: 1765, recordsPerSecond: 588, allocMs: 34, elapsed: 3, up: 12.75 },
    }],
    ['an allocation failure', 'VUB bizzy chunks=900 chunk_kib=1024 threads=1 seconds=3 error=malloc-chunk-611 up=9.10',
      { ok: false, chunks: 900, error: 'malloc-chunk-611' }],
    ['another line type', 'VUB meminfo MemTotal=1 MemFree=1 MemAvailable=1 AnonPages=1 Shmem=1 up=1', undefined],
    ['no chunk count', 'VUB bizzy records=5 rps=1', undefined],
    ['a missing field', ok.replace(' rps=588', ''), undefined],
    ['a non-numeric field', ok.replace('records=1765', 'records=x'), undefined],
    ['an empty field', ok.replace('elapsed=3.00', 'elapsed='), undefined],
  ];
  it.each(cases)('%s', (_name, text, want) => {
    expect(bizzyResult(line(text))).toEqual(want);
  });
});

describe('kernelCmdline with the bizzy scenario', () => {
  it.each([
    ['bizzy:512,412,312:20:20', 'vub.scenario=bizzy:512,412,312:20:20'],
    ['bizzy:32:3', 'vub.scenario=bizzy:32:3'],
  ])('%s', (scenario, want) => {
    expect(kernelCmdline({ scenario })).toContain(want);
  });
  it('still refuses spaces and shell characters', () => {
    expect(() => kernelCmdline({ scenario: 'bizzy:1 2:3' })).toThrow(RangeError);
    expect(() => kernelCmdline({ scenario: 'bizzy:1;2:3' })).toThrow(RangeError);
  });
});
