// readOut on popped elements: any mix of readable and writable descriptors,
// any lengths (up to the u32 a descriptor holds), truncated chains, with and
// without the device's scratch buffer, against a fake connection whose guest
// memory throws on any read outside it.
import fc from 'fast-check';
import type { BadInputKind } from '../../../src/device/bad-input.js';
import { readOut } from '../../../src/device/element-io.js';
import type { Element } from '../../../src/transport/connection.js';
import { elementIn, FakeGuestMemory } from '../arbitraries.js';
import { defineTarget, invariant, sameValue } from '../harness.js';

/** The device's limits: PFN buffers (MAX_PFN_BYTES) and stats/messages (MAX_SMALL_BYTES). */
const LIMITS = [1 << 20, 64 << 10];
const mem = new FakeGuestMemory((1 << 20) + (64 << 10));
const conn = mem.asConnection();

export interface ReadOutInput {
  limit: number;
  /** Size of the scratch buffer handed in, or null for none. */
  scratch: number | null;
  elem: Element;
}

export const readOutTarget = defineTarget<ReadOutInput>({
  name: 'read-out',
  about: 'readOut: null and one record exactly for oversized/truncated/empty chains (nothing read then); otherwise the readable bytes in order, never more than the limit, in the scratch buffer when it fits; writable descriptors reported once',
  input: fc.oneof(
    { arbitrary: fc.constantFrom(...LIMITS), weight: 4 },
    { arbitrary: fc.integer({ min: 0, max: 64 }), weight: 1 },
    { arbitrary: fc.integer({ min: 0, max: 1 << 20 }), weight: 1 },
  ).chain((limit) => fc.record({
    limit: fc.constant(limit),
    scratch: fc.oneof(fc.constant(null), fc.constantFrom(64 << 10, 16), fc.integer({ min: 0, max: 256 })),
    elem: elementIn(mem, limit),
  })),
  check({ limit, scratch: scratchSize, elem }) {
    mem.reset();
    const records: Array<{ kind: BadInputKind; detail?: Record<string, unknown>; n?: number }> = [];
    const scratch = scratchSize === null ? undefined : Buffer.alloc(scratchSize, 0xee);
    const got = readOut(conn, elem, limit, (kind, detail, n) => records.push({ kind, ...(detail ? { detail } : {}), ...(n !== undefined ? { n } : {}) }), scratch);

    const total = elem.out.reduce((s, sg) => s + sg.len, 0);
    const want: typeof records = [];
    if (elem.in.length > 0) want.push({ kind: 'wrong_direction', detail: { index: elem.index, writableDescriptors: elem.in.length } });
    if (total > limit || elem.truncated) {
      want.push({ kind: 'oversized_buffer', detail: { index: elem.index, bytes: total, limit } });
    } else if (total === 0) {
      want.push({ kind: 'empty_buffer', detail: { index: elem.index } });
    }
    sameValue(records, want, 'what was recorded');

    if (total > limit || elem.truncated || total === 0) {
      invariant(got === null, 'null for an oversized, truncated or empty chain');
      invariant(mem.reads === 0, 'nothing is read from guest memory then', () => ({ reads: mem.reads, bytes: mem.bytesRead }));
      return;
    }
    invariant(got !== null, 'the bytes of a usable chain');
    invariant(got.length === total, 'as many bytes as the readable descriptors hold', () => ({ got: got.length, total }));
    invariant(mem.bytesRead === total && mem.bytesRead <= limit, 'read exactly those bytes, within the limit', () => ({ read: mem.bytesRead, total, limit }));
    const expected = Buffer.concat(elem.out.map((sg) => mem.bytesAt(sg.addr, sg.len)));
    invariant(got.equals(expected), 'the readable descriptors\' bytes, in order (writable ones never read)');
    const inScratch = scratch !== undefined && total <= scratch.length;
    const aliases = scratch !== undefined && got.buffer === scratch.buffer;
    invariant(aliases === inScratch, 'the scratch buffer is used exactly when the chain fits in it', () => ({ total, scratch: scratch?.length, aliases }));
    if (inScratch) invariant(got.byteOffset === scratch.byteOffset, 'from the start of the scratch buffer');
  },
});
