// Generators for guest-controlled data, shared by the fuzz targets. Each one
// can produce every value of its domain (any u32, any u64, any length), but
// is biased toward the values where parsers go wrong: bounds, the edges of
// guest RAM, chunk boundaries, duplicates and runs, lengths that are not a
// whole number of entries, buffers at odd byte offsets.
import fc from 'fast-check';
import type { Element, VhostUserConnection } from '../../src/transport/connection.js';

export const PAGE = 4096;
export const U32_MAX = 0xffff_ffff;

/** Any u32, biased to 0, 1, the top, the sign bit and small values. */
export const anyU32 = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: U32_MAX }), weight: 6 },
  { arbitrary: fc.constantFrom(0, 1, 2, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, U32_MAX, 0x0100_0000), weight: 2 },
  { arbitrary: fc.integer({ min: 0, max: 300 }), weight: 2 },
);

/** Any u64 as a bigint, biased to the 2^53 boundary and the top. */
export const anyU64 = fc.oneof(
  { arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), weight: 4 },
  { arbitrary: fc.bigInt({ min: 0n, max: 2n ** 40n }), weight: 3 },
  {
    arbitrary: fc.constantFrom(0n, 1n, 2n ** 53n - 2n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n),
    weight: 2,
  },
);

/** Little-endian bytes of `value` (by hand: independent of Buffer's own writers), appended to `out`. */
export function leBytes(value: bigint | number, width: number, out: number[] = []): number[] {
  if (typeof value === 'number' && width <= 4) {
    for (let i = 0, v = value; i < width; i++, v = Math.floor(v / 256)) out.push(v % 256);
    return out;
  }
  let v = BigInt(value);
  for (let i = 0; i < width; i++) {
    out.push(Number(v & 0xffn));
    v >>= 8n;
  }
  return out;
}

/**
 * Where a payload sits in memory: a Buffer view at `offset` into a larger
 * allocation (as the device's scratch buffer, or a Buffer from Node's pool),
 * so code that assumes an aligned or zero byteOffset breaks.
 */
export interface Placement {
  offset: number;
  slack: number;
}

export const placement: fc.Arbitrary<Placement> = fc.record({
  offset: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 15 })),
  slack: fc.integer({ min: 0, max: 8 }),
});

/** A view holding exactly `bytes`, placed per `p`; the bytes around it are 0xa5 (garbage a reader must not use). */
export function placed(bytes: readonly number[], p: Placement): Buffer {
  const backing = Buffer.alloc(p.offset + bytes.length + p.slack, 0xa5);
  for (let i = 0; i < bytes.length; i++) backing[p.offset + i] = bytes[i]!;
  return backing.subarray(p.offset, p.offset + bytes.length);
}

/** 0-`max` trailing bytes (a partial entry), any values; none half the time (as a well-behaved driver sends). */
export const trailing = (max: number) => fc.oneof(
  fc.constant([] as number[]),
  fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: max }),
);

/** A guest RAM region as the memory table gives it: [gpa, gpa + size). */
export interface Region {
  gpa: number;
  size: number;
}

/**
 * 1-4 RAM regions. Mostly page-aligned (as QEMU's are), sometimes not; sizes
 * from one page to 4 GiB, some empty; placed anywhere a le32 PFN reaches and
 * beyond (a region above 16 TiB holds no PFN), possibly overlapping.
 */
export const ramRegions: fc.Arbitrary<Region[]> = fc.array(
  fc.record({
    aligned: fc.oneof({ arbitrary: fc.constant(true), weight: 6 }, { arbitrary: fc.constant(false), weight: 1 }),
    startPage: fc.oneof(
      fc.integer({ min: 0, max: 0x10_0000 }),
      fc.integer({ min: 0, max: U32_MAX }),
      fc.constantFrom(0, 0x100, U32_MAX - 16, U32_MAX, 2 ** 32),
    ),
    pages: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 2 ** 20 })),
    jitter: fc.integer({ min: 1, max: PAGE - 1 }),
  }).map(({ aligned, startPage, pages, jitter }): Region => (aligned
    ? { gpa: startPage * PAGE, size: pages * PAGE }
    // Unaligned start and end: only whole pages inside count.
    : { gpa: startPage * PAGE + jitter, size: pages * PAGE + ((jitter * 7) % PAGE) })),
  { minLength: 1, maxLength: 4 },
);
/** Mostly one to four regions; now and then none (no memory table yet: every PFN is outside). */
export const ramLayout: fc.Arbitrary<Region[]> = fc.oneof(
  { arbitrary: ramRegions, weight: 15 },
  { arbitrary: fc.constant([] as Region[]), weight: 1 },
);

/** A PFN aimed at `regions`: inside, at either edge, just outside, or anywhere. */
export function pfnNear(regions: readonly Region[]): fc.Arbitrary<number> {
  const anywhere = anyU32;
  if (regions.length === 0) return anywhere;
  const aimed = fc.record({ r: fc.integer({ min: 0, max: regions.length - 1 }), k: fc.integer({ min: -2, max: 2 }), edge: fc.boolean(), inner: fc.nat() })
    .map(({ r, k, edge, inner }) => {
      const reg = regions[r]!;
      const first = Math.floor(reg.gpa / PAGE);
      const end = Math.floor((reg.gpa + reg.size) / PAGE); // first page at or past the end
      const pfn = edge ? (k < 0 || (k === 0 && inner % 2 === 0) ? first + k : end + k - 1) : first + (end > first ? inner % (end - first) : 0);
      return Math.min(U32_MAX, Math.max(0, pfn));
    });
  return fc.oneof({ arbitrary: aimed, weight: 4 }, { arbitrary: anywhere, weight: 1 });
}

/**
 * A list of PFNs as a guest driver would send (and worse): single PFNs,
 * ascending and descending runs, repeats of earlier entries.
 */
export function pfnList(regions: readonly Region[], maxEntries = 300): fc.Arbitrary<number[]> {
  const piece = fc.oneof(
    { arbitrary: pfnNear(regions).map((p) => [p]), weight: 4 },
    {
      arbitrary: fc.record({ start: pfnNear(regions), len: fc.integer({ min: 2, max: 48 }), down: fc.boolean() })
        .map(({ start, len, down }) => Array.from({ length: len }, (_, i) => (down ? start - i : start + i)).filter((p) => p >= 0 && p <= U32_MAX)),
      weight: 2,
    },
    { arbitrary: fc.constant('repeat' as const), weight: 1 },
  );
  return fc.array(piece, { maxLength: 24, size: 'medium' }).map((pieces) => {
    const out: number[] = [];
    for (const p of pieces) {
      if (p === 'repeat') {
        if (out.length) out.push(out[out.length >>> 1]!, out[out.length - 1]!);
      } else out.push(...p);
    }
    return out.slice(0, maxEntries);
  });
}

// ---------------------------------------------------------------- elements

/** One scatter-gather entry: a host address and a length, as libvhost-user hands them out. */
export interface Sg {
  addr: bigint;
  len: number;
}

/**
 * Guest memory as a connection sees it, for code that takes a
 * VhostUserConnection: `read` copies from a Buffer standing in for guest RAM
 * mapped at `base`, and counts what was read; reading outside it throws (a
 * real read there would fault). `discardHostRange` records the calls and
 * returns what `discardResult` says (default: the length). Extend the
 * methods a target needs; anything else throws.
 */
export class FakeGuestMemory {
  readonly base = 0x7f00_0000_0000n;
  readonly memory: Buffer;
  bytesRead = 0;
  reads = 0;
  readonly discards: Sg[] = [];
  discardResult: (sg: Sg) => number = (sg) => sg.len;

  constructor(size: number, fill: (i: number) => number = (i) => (i * 131 + (i >>> 8)) & 0xff) {
    this.memory = Buffer.alloc(size);
    for (let i = 0; i < size; i++) this.memory[i] = fill(i);
  }

  reset(): void {
    this.bytesRead = 0;
    this.reads = 0;
    this.discards.length = 0;
  }

  /** The bytes at [addr, addr + len), for a reference result. */
  bytesAt(addr: bigint, len: number): Buffer {
    const off = this.offsetOf(addr, len);
    return this.memory.subarray(off, off + len);
  }

  private offsetOf(addr: bigint, len: number): number {
    const off = addr - this.base;
    if (off < 0n || off + BigInt(len) > BigInt(this.memory.length)) {
      throw new Error(`read outside guest memory: addr 0x${addr.toString(16)} len ${len}`);
    }
    return Number(off);
  }

  /** As VhostUserConnection.read. */
  read(addr: bigint, len: number, into?: Buffer): Buffer {
    const off = this.offsetOf(addr, len);
    this.reads++;
    this.bytesRead += len;
    const b = into && into.length >= len ? into.subarray(0, len) : Buffer.alloc(len);
    this.memory.copy(b, 0, off, off + len);
    return b;
  }

  /** As VhostUserConnection.discardHostRange: bytes discarded or -errno. */
  discardHostRange(addr: bigint, len: number): number {
    const sg = { addr, len };
    this.discards.push(sg);
    return this.discardResult(sg);
  }

  /** This object where a VhostUserConnection is expected; a method it lacks throws when called. */
  asConnection(): VhostUserConnection {
    return new Proxy(this, {
      get(target, prop, receiver) {
        if (prop in target) {
          const v = Reflect.get(target, prop, receiver) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        }
        if (prop === 'then') return undefined;
        return () => {
          throw new Error(`FakeGuestMemory: VhostUserConnection.${String(prop)} is not faked`);
        };
      },
    }) as unknown as VhostUserConnection;
  }
}

/** A length a descriptor may carry, biased to 0, small, around `limit`, and the u32 top. */
export function sgLength(limit: number, memSize: number): fc.Arbitrary<number> {
  return fc.oneof(
    { arbitrary: fc.integer({ min: 0, max: 64 }), weight: 10 },
    { arbitrary: fc.integer({ min: 0, max: Math.min(limit + 16, memSize) }), weight: 6 },
    { arbitrary: fc.constantFrom(0, 1, 4, 10, limit - 1, limit, limit + 1).filter((n) => n >= 0), weight: 4 },
    { arbitrary: fc.integer({ min: 0, max: U32_MAX }), weight: 1 },
  );
}

/**
 * An element as VhostUserConnection.pop returns it: driver-readable (`out`)
 * and -writable (`in`) entries inside `mem` when they fit (libvhost-user
 * maps every descriptor before it pops the element), `truncated` when the
 * chain had more entries than were looked at.
 */
export function elementIn(mem: FakeGuestMemory, limit: number, maxSg = 6): fc.Arbitrary<Element> {
  const size = mem.memory.length;
  const sg = fc.record({ len: sgLength(limit, size), at: fc.nat() }).map(({ len, at }): Sg => ({
    // Fits: somewhere inside. Too long to fit: anywhere (reading it would throw).
    addr: mem.base + BigInt(len <= size ? at % (size - len + 1) : at),
    len,
  }));
  return fc.record({
    index: fc.integer({ min: 0, max: 0xffff }),
    out: fc.array(sg, { maxLength: maxSg }),
    in: fc.oneof({ arbitrary: fc.constant([] as Sg[]), weight: 3 }, { arbitrary: fc.array(sg, { minLength: 1, maxLength: 3 }), weight: 1 }),
    truncated: fc.oneof({ arbitrary: fc.constant(false), weight: 9 }, { arbitrary: fc.constant(true), weight: 1 }),
  }).map((e): Element => ({ handle: 1n, ...e }));
}
