// Free page reporting (VIRTIO_BALLOON_F_PAGE_REPORTING): each report is one
// element of device-writable entries naming free guest ranges (Linux: at
// most PAGE_REPORTING_CAPACITY = 32, pageblock-sized). Each range is
// discarded before the element goes back, since the guest reuses the pages
// as soon as it has the acknowledgement. Discarding stays on the event loop,
// in pieces of a bounded size (discardReportSteps), so that a large report
// takes several turns instead of holding up every other VM.
import type { Element } from '../transport/connection.js';
import { BALLOON_PAGE_SIZE } from '../virtio/constants.js';
import type { Recorder } from './element-io.js';
import { wholePagesOf } from './huge-pages.js';

const EFAULT = 14;
const PAGE_MASK = BigInt(BALLOON_PAGE_SIZE - 1);

export interface ReportResult {
  pages: number;
  bytes: number;
  calls: number;
}

/** Which entries of a report to discard: aligned, non-empty ones; the rest is bad input. */
export function reportRanges(elem: Element, record: Recorder): Array<{ addr: bigint; len: number }> {
  if (elem.out.length > 0) record('wrong_direction', { queue: 'reporting', readableDescriptors: elem.out.length });
  // Entries past what the transport looked at are acknowledged undiscarded.
  if (elem.truncated) record('oversized_report', { index: elem.index, entriesSeen: elem.in.length });
  const out: Array<{ addr: bigint; len: number }> = [];
  for (const sg of elem.in) {
    if (sg.len === 0 || ((sg.addr | BigInt(sg.len)) & PAGE_MASK) !== 0n) {
      record('reporting_unaligned', { len: sg.len });
      continue;
    }
    out.push(sg);
  }
  return out;
}

/** Discard a report's ranges, one call per range; `discard` is vub_discard_hva (bytes or -errno). */
export function discardReport(elem: Element, record: Recorder, discard: (addr: bigint, len: number) => number): ReportResult {
  const steps = discardReportSteps(elem, record, discard, null);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** Ranges longer than `chunk` bytes are discarded in pieces, `inRam` checking the whole range first. */
export interface ReportChunking {
  chunk: number;
  inRam: (addr: bigint, len: number) => boolean;
}

/**
 * discardReport() in steps: with `chunking` it yields after each discard
 * call, ranges cut into pieces of at most `chunk` bytes (the event loop's
 * time per turn is bounded; see BalloonDevice), and returns the result once every range is done. A range
 * is checked whole before its first piece: nothing of a range that is not
 * all guest RAM is discarded. A piece that fails ends its range. With
 * `pageBytes` (huge-page RAM) each range shrinks to the whole huge pages in it.
 */
export function* discardReportSteps(elem: Element, record: Recorder, discard: (addr: bigint, len: number) => number,
  chunking: ReportChunking | null, pageBytes?: (addr: bigint) => number): Generator<void, ReportResult, void> {
  const res: ReportResult = { pages: 0, bytes: 0, calls: 0 };
  const failed = (ret: number, len: number) =>
    record(ret === -EFAULT ? 'reporting_outside_ram' : 'discard_failed', { len, errno: -ret });
  for (const entry of reportRanges(elem, record)) {
    // Huge-page RAM: only the whole huge pages inside the range (a hole in part of one frees nothing).
    const sg = pageBytes ? wholePagesOf(entry.addr, entry.len, pageBytes(entry.addr) || BALLOON_PAGE_SIZE) : entry;
    if (!sg) continue;
    if (!chunking || sg.len <= chunking.chunk) {
      const ret = discard(sg.addr, sg.len);
      if (ret < 0) {
        failed(ret, sg.len);
      } else {
        res.bytes += ret;
        res.calls++;
        res.pages += ret / BALLOON_PAGE_SIZE;
      }
      if (chunking) yield;
      continue;
    }
    if (!chunking.inRam(sg.addr, sg.len)) {
      failed(-EFAULT, sg.len);
      continue;
    }
    for (let off = 0; off < sg.len; off += chunking.chunk) {
      const len = Math.min(chunking.chunk, sg.len - off);
      const ret = discard(sg.addr + BigInt(off), len);
      if (ret < 0) {
        failed(ret, sg.len);
        break;
      }
      res.bytes += ret;
      res.calls++;
      res.pages += ret / BALLOON_PAGE_SIZE;
      yield;
    }
  }
  return res;
}
