// Free page reporting: any report element (writable entries of any address
// and length, readable entries, truncated chains) through reportRanges and
// discardReport, against a fake discard that acts like vub_discard_hva.
import fc from 'fast-check';
import type { BadInputKind } from '../../../src/device/bad-input.js';
import { discardReport } from '../../../src/device/reporting.js';
import type { Element } from '../../../src/transport/connection.js';
import { PAGE } from '../arbitraries.js';
import { defineTarget, invariant, sameValue } from '../harness.js';

const BASE = 0x7f00_0000_0000n;
const RAM = 256 << 20;
const EFAULT = 14;

const entry = fc.record({
  page: fc.oneof(fc.integer({ min: 0, max: RAM / PAGE + 64 }), fc.integer({ min: 0, max: 2 ** 30 })),
  skew: fc.oneof({ arbitrary: fc.constant(0), weight: 6 }, { arbitrary: fc.integer({ min: 1, max: PAGE - 1 }), weight: 1 }),
  len: fc.oneof(
    { arbitrary: fc.integer({ min: 1, max: 512 }).map((n) => n * PAGE), weight: 6 },
    { arbitrary: fc.constant(0), weight: 1 },
    { arbitrary: fc.integer({ min: 0, max: 0xffff_ffff }), weight: 1 },
  ),
}).map(({ page, skew, len }) => ({ addr: BASE + BigInt(page * PAGE + skew), len }));

export const reportingTarget = defineTarget<Element>({
  name: 'reporting',
  about: 'discardReport: only aligned, non-empty entries reach the discard, in order; every skipped or refused entry is one bad-input record of its kind; pages and bytes add up',
  input: fc.record({
    index: fc.integer({ min: 0, max: 0xffff }),
    out: fc.oneof({ arbitrary: fc.constant([] as Array<{ addr: bigint; len: number }>), weight: 5 }, { arbitrary: fc.array(entry, { minLength: 1, maxLength: 3 }), weight: 1 }),
    in: fc.array(entry, { maxLength: 64 }),
    truncated: fc.oneof({ arbitrary: fc.constant(false), weight: 9 }, { arbitrary: fc.constant(true), weight: 1 }),
  }).map((e): Element => ({ handle: 1n, ...e })),
  check(elem) {
    const records: Array<{ kind: BadInputKind; n: number }> = [];
    const calls: Array<{ addr: bigint; len: number }> = [];
    // vub_discard_hva: page-aligned and wholly inside the mapping, else -EINVAL / -EFAULT.
    const discard = (addr: bigint, len: number): number => {
      calls.push({ addr, len });
      if (((addr | BigInt(len)) & BigInt(PAGE - 1)) !== 0n || len === 0) return -22;
      return addr >= BASE && addr + BigInt(len) <= BASE + BigInt(RAM) ? len : -EFAULT;
    };
    const r = discardReport(elem, (kind, _d, n) => records.push({ kind, n: n ?? 1 }), discard);

    const usable = elem.in.filter((sg) => sg.len > 0 && ((sg.addr | BigInt(sg.len)) & BigInt(PAGE - 1)) === 0n);
    sameValue(calls, usable, 'the discard sees exactly the aligned, non-empty entries, in order');
    const inRam = usable.filter((sg) => sg.addr + BigInt(sg.len) <= BASE + BigInt(RAM));
    const bytes = inRam.reduce((n, sg) => n + sg.len, 0);
    sameValue(r, { pages: bytes / PAGE, bytes, calls: inRam.length }, 'pages, bytes and calls of the discards that worked');
    const count = (k: BadInputKind) => records.filter((x) => x.kind === k).reduce((n, x) => n + x.n, 0);
    invariant(count('wrong_direction') === (elem.out.length > 0 ? 1 : 0), 'readable entries: one wrong_direction');
    invariant(count('oversized_report') === (elem.truncated ? 1 : 0), 'a truncated chain: one oversized_report');
    invariant(count('reporting_unaligned') === elem.in.length - usable.length, 'one reporting_unaligned per skipped entry');
    invariant(count('reporting_outside_ram') === usable.length - inRam.length, 'one reporting_outside_ram per refused range');
    invariant(count('discard_failed') === 0, 'no discard_failed for input the device can judge itself');
  },
});
