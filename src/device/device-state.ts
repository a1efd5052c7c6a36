// The backend state a migration carries from the source's daemon to the
// destination's (vhost-user device state transfer, native/vub-state.h):
// which 4 KiB pages are ballooned, so the destination frees them at once
// instead of having the guest name them again (renaming.ts), and the
// operator's hold, which QEMU does not know about.
//
// Layout, little-endian:
//   "VUBS"  u16 version (1)  u16 0  u32 header bytes  header (JSON)
//   u32 runs  u32 run bytes  runs  u32 CRC-32 of all before it
// Each run is two LEB128 varints: the gap since the end of the last run
// (the first run: its PFN), less one after the first run, then its pages,
// less one. Linux's balloon is a few long runs; a balloon of single pages
// every other page costs 2 bytes a page (512 KiB per GiB ballooned), so
// the shim's 64 MiB bound on a state holds a 128 GiB balloon even then.
// Runs are ascending, non-empty, apart from each other and below 2^32 (the
// balloon's PFNs are u32). The destination checks all of it before it takes
// any of it: a state that fails a check fails the migration (QEMU's
// CHECK_DEVICE_STATE), and the source runs on.
import { crc32 } from 'node:zlib';
import type { PfnRange } from './pfn.js';

export const STATE_MAGIC = 'VUBS';
export const STATE_VERSION = 1;
/** The header is a few hundred bytes; this bounds what a decoder parses. */
const MAX_HEADER_BYTES = 64 << 10;
const U32 = 2 ** 32;

export interface MigratedState {
  /** `actual` when the source stopped (pages). */
  actualPages: number;
  /** The source's target (pages). */
  targetPages: number;
  /** Balloon pages the source knew by count only (ledger.ts). */
  unnamedPages: number;
  /** The operator's hold on the source, if any (its target is targetPages). */
  hold: { owner: string } | null;
  /** How long ago the guest last reported pressure (the hysteresis), or null. */
  guestPressureAgeMs: number | null;
  /** The named balloon pages, ascending, merged. */
  runs: PfnRange[];
}

/** LEB128 of a u32 into out at off; returns the new offset. */
function putVarint(out: Buffer, off: number, v: number): number {
  while (v >= 0x80) {
    out[off++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 128);
  }
  out[off++] = v;
  return off;
}

/** A LEB128 u32 at off (at most 5 bytes, value < 2^32), or null if it is cut short or too large. */
function getVarint(buf: Buffer, off: number, end: number): { v: number; off: number } | null {
  let v = 0;
  for (let i = 0, scale = 1; i < 5 && off < end; i++, scale *= 128) {
    const b = buf[off++]!;
    v += (b & 0x7f) * scale;
    if (!(b & 0x80)) return v < U32 ? { v, off } : null;
  }
  return null;
}

export function encodeState(s: MigratedState): Buffer {
  const header = Buffer.from(JSON.stringify({
    actualPages: s.actualPages, targetPages: s.targetPages, unnamedPages: s.unnamedPages,
    hold: s.hold, guestPressureAgeMs: s.guestPressureAgeMs,
  }));
  const runsAt = 12 + header.length + 8;
  const out = Buffer.alloc(runsAt + s.runs.length * 10 + 4);
  out.write(STATE_MAGIC, 0, 'latin1');
  out.writeUInt16LE(STATE_VERSION, 4);
  out.writeUInt32LE(header.length, 8);
  header.copy(out, 12);
  let off = runsAt;
  let end = 0;
  s.runs.forEach((r, i) => {
    off = putVarint(out, off, i === 0 ? r.pfn : r.pfn - end - 1);
    off = putVarint(out, off, r.count - 1);
    end = r.pfn + r.count;
  });
  out.writeUInt32LE(s.runs.length, runsAt - 8);
  out.writeUInt32LE(off - runsAt, runsAt - 4);
  out.writeUInt32LE(crc32(out.subarray(0, off)), off);
  return out.subarray(0, off + 4);
}

export type DecodeResult = { ok: true; state: MigratedState } | { ok: false; error: string };

const fail = (error: string): DecodeResult => ({ ok: false, error });
const isU32 = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < U32;

export function decodeState(buf: Buffer): DecodeResult {
  if (buf.length < 12 + 4 + 4) return fail(`${buf.length} bytes: shorter than an empty state`);
  if (buf.toString('latin1', 0, 4) !== STATE_MAGIC) return fail('not a vhost-user-balloon state (magic)');
  const version = buf.readUInt16LE(4);
  if (version !== STATE_VERSION) return fail(`state version ${version}; this daemon reads version ${STATE_VERSION} (update the destination's daemon)`);
  const headerBytes = buf.readUInt32LE(8);
  if (headerBytes > MAX_HEADER_BYTES || 12 + headerBytes + 12 > buf.length) return fail(`header of ${headerBytes} bytes does not fit`);
  const headerEnd = 12 + headerBytes;
  const runCount = buf.readUInt32LE(headerEnd);
  const runBytes = buf.readUInt32LE(headerEnd + 4);
  const runsAt = headerEnd + 8;
  const end = runsAt + runBytes;
  if (end + 4 !== buf.length) return fail(`runs of ${runBytes} bytes need ${end + 4} bytes, the state has ${buf.length}`);
  if (crc32(buf.subarray(0, end)) !== buf.readUInt32LE(end)) return fail('checksum mismatch: the state was damaged on its way');
  if (runCount > runBytes / 2) return fail(`${runCount} runs cannot fit in ${runBytes} bytes`);

  let h: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(buf.toString('utf8', 12, headerEnd));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return fail('header is not an object');
    h = parsed as Record<string, unknown>;
  } catch {
    return fail('header is not JSON');
  }
  for (const k of ['actualPages', 'targetPages', 'unnamedPages'] as const) {
    if (!isU32(h[k])) return fail(`header: ${k} is not a u32 page count`);
  }
  const hold = h.hold;
  if (hold !== null && (typeof hold !== 'object' || typeof (hold as { owner?: unknown }).owner !== 'string'
    || (hold as { owner: string }).owner.length === 0 || (hold as { owner: string }).owner.length > 256)) {
    return fail('header: hold is neither null nor {owner}');
  }
  const age = h.guestPressureAgeMs;
  if (age !== null && !(typeof age === 'number' && Number.isFinite(age) && age >= 0)) return fail('header: guestPressureAgeMs is neither null nor a duration');

  const runs: PfnRange[] = [];
  let next = 0;
  let pages = 0;
  let off = runsAt;
  for (let i = 0; i < runCount; i++) {
    const gap = getVarint(buf, off, end);
    const less = gap && getVarint(buf, gap.off, end);
    if (!gap || !less) return fail(`run ${i} is cut short or not a u32`);
    off = less.off;
    const pfn = i === 0 ? gap.v : next + gap.v + 1;
    const count = less.v + 1;
    if (pfn + count > U32) return fail(`run ${i} (PFN ${pfn}, ${count} pages) passes PFN 2^32`);
    runs.push({ pfn, count });
    next = pfn + count;
    pages += count;
  }
  if (off !== end) return fail(`${end - off} bytes after the last run`);
  const unnamed = h.unnamedPages as number;
  if (pages + unnamed >= U32) return fail(`${pages + unnamed} pages: more than a u32 balloon`);
  return {
    ok: true,
    state: {
      actualPages: h.actualPages as number, targetPages: h.targetPages as number, unnamedPages: unnamed,
      hold: hold === null ? null : { owner: (hold as { owner: string }).owner },
      guestPressureAgeMs: age as number | null, runs,
    },
  };
}
