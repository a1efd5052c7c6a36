// Free page reporting (VIRTIO_BALLOON_F_PAGE_REPORTING): each report is one
// element of device-writable entries naming free guest ranges (Linux: at
// most PAGE_REPORTING_CAPACITY = 32, pageblock-sized). Each range is
// discarded before the element goes back, since the guest reuses the pages
// as soon as it has the acknowledgement.
import type { Element } from '../transport/connection.js';
import { BALLOON_PAGE_SIZE } from '../virtio/constants.js';
import type { Recorder } from './element-io.js';

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

/** Discard a report's ranges; `discard` is vub_discard_hva (bytes or -errno). */
export function discardReport(elem: Element, record: Recorder, discard: (addr: bigint, len: number) => number): ReportResult {
  const res: ReportResult = { pages: 0, bytes: 0, calls: 0 };
  for (const sg of reportRanges(elem, record)) {
    const ret = discard(sg.addr, sg.len);
    if (ret < 0) {
      record(ret === -EFAULT ? 'reporting_outside_ram' : 'discard_failed', { len: sg.len, errno: -ret });
      continue;
    }
    res.bytes += ret;
    res.calls++;
    res.pages += ret / BALLOON_PAGE_SIZE;
  }
  return res;
}
