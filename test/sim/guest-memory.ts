// Guest RAM for the simulated guest: one real memfd, mapped shared in this
// process, exactly what QEMU hands a vhost-user backend. The memory table
// (regions: guest-physical range -> offset in the memfd) is either one flat
// region or the PC layout QEMU sends for a q35 guest: the VGA hole
// (0xa0000-0xbffff) and, above 2 GiB or 2.75 GiB, the PCI hole, with the rest
// of RAM relocated above 4 GiB. The top of the last region is reserved for
// rings and driver buffers; balloon PFNs never come from there.
import { fstatSync } from 'node:fs';
import koffi from 'koffi';
import { close, dataBytes, dataRanges, mapMemfd, munmap } from './sys.js';

export const PAGE = 4096;
const GiB = 2 ** 30;

export type Layout = 'flat' | 'pc' | 'numa';

export interface Region {
  /** Guest-physical start. */
  gpa: number;
  size: number;
  /** Offset of the region in the memfd (mmap_offset). */
  offset: number;
}

/** The regions QEMU's vhost memory listener produces for a guest of `size` bytes. */
export function layoutRegions(size: number, layout: Layout): Region[] {
  if (layout === 'flat') return [{ gpa: 0, size, offset: 0 }];
  // Two memory backends (NUMA nodes) back to back: regions that touch in
  // guest-physical space but are mapped apart by the device.
  if (layout === 'numa') return [{ gpa: 0, size: size / 2, offset: 0 }, { gpa: size / 2, size: size / 2, offset: size / 2 }];
  // q35: RAM below 4 GiB ends at 2 GiB if the guest has >= 2.75 GiB, else at 2.75 GiB.
  const lowmem = size >= 0xb0000000 ? 0x80000000 : 0xb0000000;
  const low = Math.min(size, lowmem);
  const regions: Region[] = [
    { gpa: 0, size: 0xa0000, offset: 0 },
    { gpa: 0xc0000, size: low - 0xc0000, offset: 0xc0000 },
  ];
  if (size > low) regions.push({ gpa: 4 * GiB, size: size - low, offset: low });
  return regions;
}

export class GuestMemory {
  readonly fd: number;
  /** Where this process mapped the memfd: userspace_addr = hostAddr + offset. */
  readonly hostAddr: bigint;
  /** The whole memfd, indexed by memfd offset (equal to the gpa for 'flat'). */
  readonly bytes: Buffer;
  readonly regions: Region[];
  private bump: number;

  constructor(readonly size: number, readonly reservedBytes = 8 << 20, readonly layout: Layout = 'flat', readonly hugePageBytes = 0) {
    if (size % PAGE || reservedBytes % PAGE) throw new RangeError('guest RAM and reserve must be page multiples');
    if (hugePageBytes && (size % hugePageBytes || layout !== 'flat')) throw new RangeError('huge-page RAM: a flat layout of whole huge pages');
    const { fd, addr } = mapMemfd('vub-sim-guest-ram', size, hugePageBytes);
    this.fd = fd;
    this.hostAddr = addr;
    this.bytes = Buffer.from(koffi.view(addr, size));
    this.regions = layoutRegions(size, layout);
    const last = this.regions.at(-1)!;
    if (last.size <= reservedBytes) throw new RangeError('guest RAM smaller than its reserved area');
    this.bump = last.gpa + last.size - reservedBytes;
  }

  /** First byte of the reserved area (a gpa); balloonable RAM lies below it. */
  get usableEnd(): number {
    const last = this.regions.at(-1)!;
    return last.gpa + last.size - this.reservedBytes;
  }

  /** One past the highest guest-physical RAM address. */
  get ramEnd(): number {
    const last = this.regions.at(-1)!;
    return last.gpa + last.size;
  }

  /** The region holding [gpa, gpa+len), or undefined if the range is not all RAM of one region. */
  regionOf(gpa: number, len = 1): Region | undefined {
    return this.regions.find((r) => gpa >= r.gpa && gpa + len <= r.gpa + r.size);
  }

  isRam(gpa: number, len = 1): boolean {
    return this.regionOf(gpa, len) !== undefined;
  }

  /** memfd offset of a gpa; throws outside RAM (the sim's own bug, not the daemon's). */
  off(gpa: number, len = 1): number {
    const r = this.regionOf(gpa, len);
    if (!r) throw new RangeError(`gpa 0x${gpa.toString(16)}+0x${len.toString(16)} is not guest RAM`);
    return r.offset + (gpa - r.gpa);
  }

  /** The sim's (QEMU's) virtual address of a gpa: what SET_VRING_ADDR carries. */
  hva(gpa: number): bigint {
    return this.hostAddr + BigInt(this.off(gpa));
  }

  /** A Buffer over [gpa, gpa+len) of guest RAM (no copy). */
  slice(gpa: number, len: number): Buffer {
    const o = this.off(gpa, len);
    return this.bytes.subarray(o, o + len);
  }

  /** Allocate from the reserved area (rings, buffers); never freed. Returns a gpa. */
  alloc(len: number, align = 64): number {
    const at = Math.ceil(this.bump / align) * align;
    if (at + len > this.ramEnd) throw new Error('simulated guest: reserved area exhausted');
    this.bump = at + len;
    return at;
  }

  /** Copy bytes into the reserved area; returns their gpa. */
  put(data: Buffer, align = 8): number {
    const at = this.alloc(Math.max(1, data.length), align);
    data.copy(this.bytes, this.off(at, Math.max(1, data.length)));
    return at;
  }

  /** Guest-physical ranges of RAM intersected with [gpa, gpa+len). */
  ramRanges(gpa: number, len: number): Array<{ gpa: number; len: number; offset: number }> {
    const out: Array<{ gpa: number; len: number; offset: number }> = [];
    for (const r of this.regions) {
      const s = Math.max(gpa, r.gpa);
      const e = Math.min(gpa + len, r.gpa + r.size);
      if (s < e) out.push({ gpa: s, len: e - s, offset: r.offset + (s - r.gpa) });
    }
    return out;
  }

  /** Write to every page of the RAM in [gpa, gpa+len) so it is backed by host memory. */
  touch(gpa: number, len: number, value = 0xa5): void {
    for (const r of this.ramRanges(gpa, len)) {
      for (let o = r.offset; o < r.offset + r.len; o += PAGE) this.bytes[o] = value;
    }
  }

  /** Bytes of the RAM in [gpa, gpa+len) backed in the memfd (SEEK_DATA/SEEK_HOLE). */
  backedBytes(gpa: number, len: number): number {
    return this.ramRanges(gpa, len).reduce((n, r) => n + dataBytes(this.fd, r.offset, r.len), 0);
  }

  /** One flag per page of [gpa, gpa+len): 1 where the RAM is backed. One SEEK_DATA/SEEK_HOLE walk, not one per page. */
  backedPageMap(gpa: number, len: number): Uint8Array {
    const map = new Uint8Array(Math.ceil(len / PAGE));
    for (const r of this.ramRanges(gpa, len)) {
      for (const [s, e] of dataRanges(this.fd, r.offset, r.len)) {
        map.fill(1, (r.gpa - gpa + s - r.offset) / PAGE, (r.gpa - gpa + e - r.offset) / PAGE);
      }
    }
    return map;
  }

  /** Bytes of the whole memfd backed by host memory: one fstat, however fragmented it is. */
  allocatedBytes(): number {
    return fstatSync(this.fd).blocks * 512;
  }

  /** Same as backedBytes: shmem pages are resident or swapped, both count as data. */
  residentBytes(gpa: number, len: number): number {
    return this.backedBytes(gpa, len);
  }

  /** Is every page of the RAM in [gpa, gpa+len) backed? */
  isBacked(gpa: number, len: number): boolean {
    const ram = this.ramRanges(gpa, len).reduce((n, r) => n + r.len, 0);
    return this.backedBytes(gpa, len) === ram;
  }

  /** Bytes of the memfd outside every region (the VGA hole): must stay untouched by the device. */
  unmappedBackedBytes(): number {
    let n = 0;
    let at = 0;
    for (const r of [...this.regions].sort((a, b) => a.offset - b.offset)) {
      if (r.offset > at) n += dataBytes(this.fd, at, r.offset - at);
      at = Math.max(at, r.offset + r.size);
    }
    return n;
  }

  close(): void {
    munmap(this.hostAddr, this.size);
    close(this.fd);
  }
}
