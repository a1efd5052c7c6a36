// The connection's discard thread (native/vub-discard.c) as BackgroundDiscard
// needs it: page runs in, page counts out.
import type { DiscardWorker } from '../device/discard.js';
import { rangeBytes } from '../device/pfn.js';
import type { VhostUserConnection } from './connection.js';

/** The connection's discard thread, in pages and ranges. */
export function discardThread(conn: VhostUserConnection): DiscardWorker {
  const PAGE = rangeBytes({ pfn: 0, count: 1 }).len;
  let pairs = new BigUint64Array(512);
  return {
    submit(ranges) {
      if (pairs.length < 2 * ranges.length) pairs = new BigUint64Array(2 * ranges.length);
      ranges.forEach((r, i) => {
        const { gpa, len } = rangeBytes(r);
        pairs[2 * i] = BigInt(gpa);
        pairs[2 * i + 1] = BigInt(len);
      });
      return conn.discardSubmit(pairs.subarray(0, 2 * ranges.length));
    },
    cancel(r) {
      const { gpa, len } = rangeBytes(r);
      return conn.discardCancel(gpa, len) / PAGE;
    },
    tryCancel(r) {
      const { gpa, len } = rangeBytes(r);
      const n = conn.discardTryCancel(gpa, len);
      return n < 0 ? -1 : n / PAGE;
    },
    drop: () => conn.discardDrop() / PAGE,
    waitIdle: () => conn.discardWait(),
    resume: () => conn.discardResume(),
    exportJob: () => conn.discardExport().map(({ gpa, len }) => ({ pfn: gpa / PAGE, count: len / PAGE })),
    collect() {
      const rep = conn.discardCollect();
      const failures = rep.lastFailure ? [{ ...rep.lastFailure, count: rep.failures }] : [];
      return { result: { bytes: rep.bytes, calls: rep.calls, failures }, pending: rep.pending };
    },
  };
}
