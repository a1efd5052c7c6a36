// decodeState (the migration's device state, src/device/device-state.ts) on
// what a source daemon, QEMU or anyone who can write the migration stream
// hands the destination: states as encodeState makes them, the same with
// bits flipped, cut short or lengthened, and bytes that only start like one.
// It must never throw; what it takes must come back the same when sent
// again (so nothing is half read), with runs ascending,
// apart, non-empty and below 2^32; an unmutated state comes back as it was.
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { decodeState, encodeState, type MigratedState } from '../../../src/device/device-state.js';
import type { PfnRange } from '../../../src/device/pfn.js';
import { anyU32, U32_MAX } from '../arbitraries.js';
import { defineTarget, invariant, sameValue } from '../harness.js';

export interface DeviceStateInput {
  state: MigratedState;
  /** How the bytes are damaged on the way (none: as encoded). */
  damage: { kind: 'none' } | { kind: 'flip'; at: number; bit: number } | { kind: 'cut'; at: number }
    | { kind: 'append'; bytes: number[] } | { kind: 'raw'; bytes: number[] }
    /** Flipped, then the checksum made right again: what only a writer who knows the format sends. */
    | { kind: 'reseal'; at: number; bit: number };
}

/** Ascending, apart runs from gaps and lengths, near the top of the PFN space too. */
const runs: fc.Arbitrary<PfnRange[]> = fc.tuple(
  fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 20 }), fc.constant(U32_MAX - 2 ** 12)),
  fc.array(fc.tuple(fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 512 })), fc.oneof(fc.constantFrom(1, 2, 256), fc.integer({ min: 1, max: 4096 }))), { maxLength: 40 }),
).map(([start, parts]) => {
  const out: PfnRange[] = [];
  let at = start;
  for (const [gap, count] of parts) {
    const pfn = at + (out.length ? gap : 0);
    if (pfn + count > 2 ** 32) break;
    out.push({ pfn, count });
    at = pfn + count;
  }
  return out;
});

const state: fc.Arbitrary<MigratedState> = fc.record({
  actualPages: anyU32, targetPages: anyU32, unnamedPages: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 20 })),
  hold: fc.option(fc.record({ owner: fc.string({ minLength: 1, maxLength: 40 }) }), { nil: null }),
  guestPressureAgeMs: fc.option(fc.oneof(fc.integer({ min: 0, max: 10 ** 9 }), fc.double({ min: 0, max: 1e6, noNaN: true })), { nil: null }),
  runs,
});

const damage: fc.Arbitrary<DeviceStateInput['damage']> = fc.oneof(
  { arbitrary: fc.constant({ kind: 'none' as const }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('append' as const), bytes: fc.array(fc.nat(255), { minLength: 1, maxLength: 16 }) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('raw' as const), bytes: fc.array(fc.nat(255), { maxLength: 64 }) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('reseal' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }), weight: 3 },
);

function damaged(good: Buffer, d: DeviceStateInput['damage']): Buffer {
  switch (d.kind) {
    case 'none':
      return good;
    case 'flip': {
      const b = Buffer.from(good);
      b[d.at % b.length]! ^= 1 << d.bit;
      return b;
    }
    case 'cut':
      return good.subarray(0, d.at % good.length);
    case 'append':
      return Buffer.concat([good, Buffer.from(d.bytes)]);
    case 'raw':
      return Buffer.concat([Buffer.from('VUBS\x01\x00\x00\x00'), Buffer.from(d.bytes)]);
    case 'reseal': {
      const b = Buffer.from(good);
      // Half of them in the runs, where the checks the checksum hid are.
      const runsAt = 16 + b.readUInt32LE(8);
      const span = b.length - 4 - runsAt;
      b[d.at % 2 && span > 0 ? runsAt + (d.at % span) : d.at % (b.length - 4)]! ^= 1 << d.bit;
      b.writeUInt32LE(crc32(b.subarray(0, b.length - 4)), b.length - 4);
      return b;
    }
  }
}

export const deviceStateTarget = defineTarget<DeviceStateInput>({
  name: 'device-state',
  about: 'decodeState: never throws; what it takes survives encode+decode, with ascending, apart, non-empty runs below 2^32; an undamaged state comes back whole; a damaged one is refused unless its checksum was made right',
  input: fc.record({ state, damage }),
  check({ state: s, damage: d }) {
    const good = encodeState(s);
    const bytes = damaged(good, d);
    const r = decodeState(bytes);
    if (d.kind === 'none') {
      invariant(r.ok, 'an undamaged state is taken', () => ({ error: r.ok ? null : r.error }));
      const sent = { ...s, hold: s.hold ? { owner: s.hold.owner } : null, runs: s.runs.map((x) => ({ pfn: x.pfn, count: x.count })) };
      sameValue(r.ok ? r.state : null, sent, 'the state as it was sent');
    }
    if (d.kind === 'flip' || d.kind === 'cut' || d.kind === 'append') {
      invariant(!r.ok, 'damage the checksum or the length catches is refused');
    }
    if (!r.ok) {
      invariant(typeof r.error === 'string' && r.error.length > 0, 'a refusal says why');
      return;
    }
    // A header may be written differently (JSON allows it); what is taken must survive being sent again.
    sameValue(decodeState(encodeState(r.state)), r, 'what is taken, encoded and decoded again');
    let next = -1;
    for (const run of r.state.runs) {
      invariant(run.count > 0 && run.pfn > next && run.pfn + run.count <= 2 ** 32, 'runs ascending, apart, non-empty, below 2^32', () => ({ run, next }));
      next = run.pfn + run.count;
    }
  },
});
