// Hostile rings for bad-input tests. Each helper writes descriptors or ring
// indices the Linux driver never would, then kicks. Most of them make
// libvhost-user call vu_panic() (as QEMU's virtqueue code would mark the
// device broken): after one, expect the daemon to drop this frontend, and
// start a new SimGuest. The ring's own bookkeeping is not kept consistent.
import type { SimGuest } from './driver.js';
import type { Role } from './linux.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT } from './split-ring.js';

/** A chain whose last descriptor points back at its first ("Looped descriptor"). */
export function postLoop(g: SimGuest, role: Role): void {
  const ring = g.ring(role);
  const at = g.scratch(Buffer.alloc(8));
  ring.addRaw([{ gpa: at, len: 4, flags: VIRTQ_DESC_F_NEXT, next: 1 }, { gpa: at + 4, len: 4, flags: VIRTQ_DESC_F_NEXT, next: 0 }]);
  ring.notify();
}

/**
 * A well-formed chain of `n` (default 2 x queue size) 4-byte device-readable
 * segments in one indirect table: longer than the queue, which the spec
 * forbids and libvhost-user accepts (it bounds an indirect chain by the
 * table's length). Returns the head to wait on.
 */
export function postChainLongerThanQueue(g: SimGuest, role: Role, n = 2 * g.ring(role).num): number {
  const at = g.scratch(Buffer.alloc(4 * n));
  const segs = Array.from({ length: n }, (_, i) => ({ gpa: at + 4 * i, len: 4 }));
  return g.postRaw(role, segs, { indirect: true });
}

/** An avail entry naming a descriptor beyond the table ("Guest says index %u is available"). */
export function postHeadOutOfRange(g: SimGuest, role: Role): void {
  const ring = g.ring(role);
  ring.publish(ring.num + 7);
  ring.notify();
}

/** avail->idx moved by more than the queue size ("Guest moved avail index"). */
export function postAvailIdxJump(g: SimGuest, role: Role): void {
  const ring = g.ring(role);
  ring.setAvailIdxRaw(ring.num + 3);
  ring.notify();
}

/** A descriptor naming guest-physical memory outside RAM (the device cannot map it). */
export function postBufferOutsideRam(g: SimGuest, role: Role, opts: { write?: boolean } = {}): number {
  const gpa = g.mem.ramEnd + (64 << 20);
  return g.postRaw(role, [{ gpa, len: 4096, write: opts.write ?? false }]);
}

/** An indirect descriptor whose table length is not a multiple of 16. */
export function postBadIndirectTable(g: SimGuest, role: Role): void {
  const ring = g.ring(role);
  ring.addRaw([{ gpa: g.scratch(Buffer.alloc(64)), len: 20, flags: VIRTQ_DESC_F_INDIRECT }]);
  ring.notify();
}

/**
 * An indirect table containing another indirect descriptor (the spec forbids
 * it; libvhost-user 7.2 does not check, and sees a 16-byte device-readable
 * segment). Returns the head.
 */
export function postNestedIndirect(g: SimGuest, role: Role): number {
  const ring = g.ring(role);
  const inner = g.scratch(Buffer.alloc(32));
  const outer = Buffer.alloc(16);
  outer.writeBigUInt64LE(BigInt(inner), 0);
  outer.writeUInt32LE(16, 8);
  outer.writeUInt16LE(VIRTQ_DESC_F_INDIRECT, 12);
  const head = ring.addRaw([{ gpa: g.scratch(outer), len: 16, flags: VIRTQ_DESC_F_INDIRECT }]);
  ring.notify();
  return head;
}

/** A device-readable segment after a device-writable one (out after in: invalid order). */
export function postOutAfterIn(g: SimGuest, role: Role): number {
  const a = g.scratch(Buffer.alloc(8));
  return g.postRaw(role, [{ gpa: a, len: 4, write: true }, { gpa: a + 4, len: 4 }]);
}

/** Inflate PFNs given raw, as one buffer of any byte length (odd lengths, empty, > 256 PFNs). */
export function postPfnBytes(g: SimGuest, role: 'inflate' | 'deflate', bytes: Buffer, opts: { write?: boolean } = {}): number {
  return g.postRaw(role, [{ gpa: g.scratch(bytes), len: bytes.length, write: opts.write ?? false }]);
}

/** le32 array helper for PFN and message payloads. */
export const le32 = (...v: number[]): Buffer => Buffer.from(Uint32Array.from(v.map((x) => x >>> 0)).buffer);

