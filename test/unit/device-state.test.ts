// The migration's device state (src/device/device-state.ts): what encodes,
// and every refusal with the reason the destination logs.
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeState, encodeState, type MigratedState } from '../../src/device/device-state.js';

const STATE: MigratedState = {
  actualPages: 131072, targetPages: 131072, unnamedPages: 0, hold: { owner: 'operator' }, guestPressureAgeMs: 1500,
  runs: [{ pfn: 1000, count: 1 }, { pfn: 1002, count: 4096 }, { pfn: 0xffff_f000, count: 0x1000 }],
};

/** The encoding with the header replaced, or runs rewritten, and the checksum made right. */
function forged(o: { header?: string; runs?: Array<[number, number]>; version?: number }): Buffer {
  const header = Buffer.from(o.header ?? JSON.stringify({ actualPages: 1, targetPages: 1, unnamedPages: 0, hold: null, guestPressureAgeMs: null }));
  const runs = o.runs ?? [];
  const b = Buffer.alloc(12 + header.length + 4 + runs.length * 8 + 4);
  b.write('VUBS', 0, 'latin1');
  b.writeUInt16LE(o.version ?? 1, 4);
  b.writeUInt32LE(header.length, 8);
  header.copy(b, 12);
  let off = 12 + header.length;
  b.writeUInt32LE(runs.length, off);
  off += 4;
  for (const [pfn, count] of runs) {
    b.writeUInt32LE(pfn, off);
    b.writeUInt32LE(count, off + 4);
    off += 8;
  }
  b.writeUInt32LE(crc32(b.subarray(0, off)), off);
  return b;
}

describe('encodeState / decodeState', () => {
  it('round-trips, hold, hysteresis and runs at the top of the PFN space included', () => {
    expect(decodeState(encodeState(STATE))).toEqual({ ok: true, state: STATE });
  });

  it('costs 8 bytes a run plus a header of about 130 bytes', () => {
    expect(encodeState({ ...STATE, runs: [] }).length).toBeLessThan(160);
    expect(encodeState(STATE).length - encodeState({ ...STATE, runs: [] }).length).toBe(3 * 8);
  });

  const good = encodeState(STATE);
  it.each([
    ['empty', Buffer.alloc(0), 'shorter than an empty state'],
    ['another magic', Buffer.concat([Buffer.from('XUBS'), good.subarray(4)]), 'magic'],
    ['a newer version', forged({ version: 2 }), 'state version 2; this daemon reads version 1'],
    ['cut short', good.subarray(0, good.length - 1), 'runs need'],
    ['a byte more', Buffer.concat([good, Buffer.from([0])]), 'runs need'],
    ['a flipped bit', (() => { const b = Buffer.from(good); b[20]! ^= 4; return b; })(), 'checksum mismatch'],
    ['a header that is not JSON', forged({ header: '{actualPages' }), 'not JSON'],
    ['a header that is an array', forged({ header: '[]' }), 'not an object'],
    ['a negative page count', forged({ header: '{"actualPages":-1,"targetPages":1,"unnamedPages":0,"hold":null,"guestPressureAgeMs":null}' }), 'actualPages is not a u32'],
    ['a page count of 2^32', forged({ header: '{"actualPages":1,"targetPages":4294967296,"unnamedPages":0,"hold":null,"guestPressureAgeMs":null}' }), 'targetPages is not a u32'],
    ['a hold without owner', forged({ header: '{"actualPages":1,"targetPages":1,"unnamedPages":0,"hold":{},"guestPressureAgeMs":null}' }), 'hold is neither'],
    ['no hysteresis field', forged({ header: '{"actualPages":1,"targetPages":1,"unnamedPages":0,"hold":null}' }), 'guestPressureAgeMs'],
    ['an empty run', forged({ runs: [[5, 0]] }), 'run 0 is empty'],
    ['runs out of order', forged({ runs: [[100, 1], [50, 1]] }), 'run 1 (PFN 50) is not after run 0'],
    ['runs that overlap', forged({ runs: [[100, 10], [105, 1]] }), 'is not after run 0'],
    ['runs that touch (not merged)', forged({ runs: [[100, 10], [110, 1]] }), 'is not after run 0'],
    ['a run past PFN 2^32', forged({ runs: [[0xffff_ffff, 2]] }), 'passes PFN 2^32'],
    ['more pages than a u32 balloon', forged({ runs: [[0, 0xffff_ffff]], header: '{"actualPages":1,"targetPages":1,"unnamedPages":5,"hold":null,"guestPressureAgeMs":null}' }), 'more than a u32 balloon'],
  ])('refuses %s', (_n, bytes, why) => {
    const r = decodeState(bytes);
    expect(r.ok).toBe(false);
    expect(r.ok ? '' : r.error).toContain(why);
  });
});
