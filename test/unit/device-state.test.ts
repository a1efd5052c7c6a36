// The migration's device state (src/device/device-state.ts): what encodes,
// and every refusal with the reason the destination logs.
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeState, encodeState, type MigratedState } from '../../src/device/device-state.js';

const STATE: MigratedState = {
  actualPages: 131072, targetPages: 131072, unnamedPages: 0, hold: { owner: 'operator' }, guestPressureAgeMs: 1500,
  runs: [{ pfn: 1000, count: 1 }, { pfn: 1002, count: 4096 }, { pfn: 0xffff_f000, count: 0x1000 }],
};

/** A state written by hand: the header, the run count and the runs' bytes as given, the checksum right. */
function forged(o: { header?: string; runCount?: number; runBytes?: number[]; version?: number }): Buffer {
  const header = Buffer.from(o.header ?? JSON.stringify({ actualPages: 1, targetPages: 1, unnamedPages: 0, hold: null, guestPressureAgeMs: null }));
  const runs = Buffer.from(o.runBytes ?? []);
  const b = Buffer.alloc(12 + header.length + 8 + runs.length + 4);
  b.write('VUBS', 0, 'latin1');
  b.writeUInt16LE(o.version ?? 1, 4);
  b.writeUInt32LE(header.length, 8);
  header.copy(b, 12);
  let off = 12 + header.length;
  b.writeUInt32LE(o.runCount ?? 0, off);
  b.writeUInt32LE(runs.length, off + 4);
  runs.copy(b, off + 8);
  off += 8 + runs.length;
  b.writeUInt32LE(crc32(b.subarray(0, off)), off);
  return b;
}

describe('encodeState / decodeState', () => {
  it('round-trips, hold, hysteresis and runs at the top of the PFN space included', () => {
    expect(decodeState(encodeState(STATE))).toEqual({ ok: true, state: STATE });
  });

  it('costs a header of about 150 bytes, and 2 bytes a run for single pages every other page (512 KiB per GiB ballooned)', () => {
    expect(encodeState({ ...STATE, runs: [] }).length).toBeLessThan(170);
    const singles = Array.from({ length: 1000 }, (_, i) => ({ pfn: 2 * i, count: 1 }));
    expect(encodeState({ ...STATE, runs: singles }).length - encodeState({ ...STATE, runs: [] }).length).toBe(2000);
    // Varints: 1000 (2 bytes), gap 0 (1), 4095 (2), then a gap of ~4 Gi pages (5) and 4095 (2).
    expect(encodeState(STATE).length - encodeState({ ...STATE, runs: [] }).length).toBe(2 + 1 + 1 + 2 + 5 + 2);
  });

  const good = encodeState(STATE);
  it.each([
    ['empty', Buffer.alloc(0), 'shorter than an empty state'],
    ['another magic', Buffer.concat([Buffer.from('XUBS'), good.subarray(4)]), 'magic'],
    ['a newer version', forged({ version: 2 }), 'state version 2; this daemon reads version 1'],
    ['cut short', good.subarray(0, good.length - 1), 'bytes need'],
    ['a byte more', Buffer.concat([good, Buffer.from([0])]), 'bytes need'],
    ['a flipped bit', (() => { const b = Buffer.from(good); b[20]! ^= 4; return b; })(), 'checksum mismatch'],
    ['a header that is not JSON', forged({ header: '{actualPages' }), 'not JSON'],
    ['a header that is an array', forged({ header: '[]' }), 'not an object'],
    ['a negative page count', forged({ header: '{"actualPages":-1,"targetPages":1,"unnamedPages":0,"hold":null,"guestPressureAgeMs":null}' }), 'actualPages is not a u32'],
    ['a page count of 2^32', forged({ header: '{"actualPages":1,"targetPages":4294967296,"unnamedPages":0,"hold":null,"guestPressureAgeMs":null}' }), 'targetPages is not a u32'],
    ['a hold without owner', forged({ header: '{"actualPages":1,"targetPages":1,"unnamedPages":0,"hold":{},"guestPressureAgeMs":null}' }), 'hold is neither'],
    ['no hysteresis field', forged({ header: '{"actualPages":1,"targetPages":1,"unnamedPages":0,"hold":null}' }), 'guestPressureAgeMs'],
    ['a varint cut short', forged({ runCount: 1, runBytes: [5, 0x80] }), 'run 0 is cut short'],
    ['a varint of six bytes', forged({ runCount: 1, runBytes: [0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0] }), 'run 0 is cut short or not a u32'],
    ['a varint of 2^32', forged({ runCount: 1, runBytes: [0x80, 0x80, 0x80, 0x80, 0x10, 0] }), 'not a u32'],
    ['a run past PFN 2^32', forged({ runCount: 1, runBytes: [0xfe, 0xff, 0xff, 0xff, 0x0f, 2] }), 'run 0 (PFN 4294967294, 3 pages) passes PFN 2^32'],
    ['a second run past PFN 2^32', forged({ runCount: 2, runBytes: [0xfd, 0xff, 0xff, 0xff, 0x0f, 0, 0, 1] }), 'run 1 (PFN 4294967295, 2 pages) passes PFN 2^32'],
    ['bytes after the last run', forged({ runCount: 1, runBytes: [5, 0, 7] }), '1 bytes after the last run'],
    ['more runs than bytes can hold', forged({ runCount: 3, runBytes: [5, 0, 7, 0] }), '3 runs cannot fit in 4 bytes'],
    ['more pages than a u32 balloon', forged({ runCount: 1, runBytes: [0, 0xfe, 0xff, 0xff, 0xff, 0x0f], header: '{"actualPages":1,"targetPages":1,"unnamedPages":5,"hold":null,"guestPressureAgeMs":null}' }), 'more than a u32 balloon'],
  ])('refuses %s', (_n, bytes, why) => {
    const r = decodeState(bytes);
    expect(r.ok).toBe(false);
    expect(r.ok ? '' : r.error).toContain(why);
  });
});
