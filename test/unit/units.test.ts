import { describe, expect, it } from 'vitest';
import { formatBytes, parseSize, sizeToBytes } from '../../src/units.js';

describe('parseSize', () => {
  it.each([
    ['512M', { bytes: 512 * 2 ** 20 }], ['512MiB', { bytes: 512 * 2 ** 20 }], ['2G', { bytes: 2 * 2 ** 30 }],
    ['1.5GiB', { bytes: 1.5 * 2 ** 30 }], ['4096K', { bytes: 4096 * 1024 }], ['100b', { bytes: 100 }],
    [' 1 t ', { bytes: 2 ** 40 }], ['25%', { percent: 25 }], ['0%', { percent: 0 }], ['0M', { bytes: 0 }], ['0', { bytes: 0 }],
  ])('%s', (text, spec) => {
    expect(parseSize(text)).toEqual(spec);
  });

  it.each([
    ['512', 'EBALLOON_CONFIG', /no unit/], ['12X', 'EBALLOON_CONFIG', /unknown unit/], ['-5M', 'EBALLOON_CONFIG', /not a size/],
    ['abc', 'EBALLOON_CONFIG', /not a size/], ['150%', 'EBALLOON_RANGE', /more than all/],
  ])('rejects %s', (text, code, msg) => {
    expect(() => parseSize(text)).toThrow(msg);
    try { parseSize(text); } catch (e) { expect((e as { code: string }).code).toBe(code); }
  });
});

describe('sizeToBytes', () => {
  it('resolves percentages against guest RAM', () => {
    expect(sizeToBytes({ percent: 25 }, 2 ** 30)).toBe(2 ** 28);
    expect(sizeToBytes({ bytes: 5 }, 0)).toBe(5);
    expect(() => sizeToBytes({ percent: 10 }, 0)).toThrow(/once QEMU has connected/);
  });
});

describe('formatBytes', () => {
  it.each([[512 * 2 ** 20, '512 MiB'], [2 ** 30, '1 GiB'], [1.5 * 2 ** 30, '1.50 GiB'], [3 * 2 ** 10, '3 KiB'], [12, '12 B']])('%d -> %s', (b, s) => {
    expect(formatBytes(b)).toBe(s);
  });
});
