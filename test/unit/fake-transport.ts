// An in-process stand-in for VhostUserConnection: queues of elements the
// test posts, a Buffer as guest RAM, the config space, and a discard thread
// that discards when the test says so. For unit tests of BalloonDevice and
// the Controller without a socket, a shim or a memfd.
import { EventEmitter } from 'node:events';
import type { DiscardResult, DiscardWorker } from '../../src/device/discard.js';
import type { PfnRange, RamRegion } from '../../src/device/pfn.js';
import type { ConnectionEvents, DeviceTransport, Element } from '../../src/device/transport.js';
import { queueRoles } from '../../src/virtio/features.js';

export const PAGE = 4096;
const BASE = 0x7000_0000_0000n;

export class FakeTransport extends EventEmitter<ConnectionEvents> implements DeviceTransport {
  open = true;
  readonly config = Buffer.alloc(16);
  /** Guest memory the elements' buffers live in (scratch, not guest RAM pages). */
  readonly scratch = Buffer.alloc(1 << 20);
  private scratchUsed = 0;
  readonly queues = new Map<number, Element[]>();
  readonly pushed: Array<{ qidx: number; index: number; len: number }> = [];
  readonly dropped: number[] = [];
  readonly notified: number[] = [];
  readonly enabled = new Map<number, boolean>();
  readonly discarded: Array<{ gpa: number; len: number }> = [];
  readonly hostDiscards: Array<{ addr: bigint; len: number }> = [];
  configChanges = 0;
  lastAvail = new Map<number, number>();
  ram: RamRegion[];
  readonly worker = new FakeWorker();
  private nextIndex = 0;

  constructor(ramBytes = 64 << 20) {
    super();
    this.ram = [{ gpa: 0, size: ramBytes }];
  }

  // ---- DeviceTransport ----
  protocolFeatures(): bigint {
    return (1n << 9n) | (1n << 5n); // CONFIG, SLAVE_REQ
  }
  regions(): RamRegion[] {
    return this.ram;
  }
  configWrite(offset: number, data: Buffer): void {
    data.copy(this.config, offset);
  }
  configRead(offset: number, len: number): Buffer {
    return Buffer.from(this.config.subarray(offset, offset + len));
  }
  configChanged(): number {
    this.configChanges++;
    return 0;
  }
  configChangeState() {
    return { sent: this.configChanges, waits: 0, pending: false };
  }
  enableQueue(qidx: number, enable: boolean): void {
    this.enabled.set(qidx, enable);
  }
  queueLastAvail(qidx: number): number {
    return this.lastAvail.get(qidx) ?? 0;
  }
  pop(qidx: number): Element | null {
    return this.queues.get(qidx)?.shift() ?? null;
  }
  push(qidx: number, elem: Element, len: number): void {
    this.pushed.push({ qidx, index: elem.index, len });
  }
  drop(elem: Element): void {
    this.dropped.push(elem.index);
  }
  notify(qidx: number): void {
    this.notified.push(qidx);
  }
  read(addr: bigint, len: number, into?: Buffer): Buffer {
    const off = Number(addr - BASE);
    const b = into && into.length >= len ? into.subarray(0, len) : Buffer.alloc(len);
    this.scratch.copy(b, 0, off, off + len);
    return b;
  }
  discard(gpa: number, len: number): number {
    this.discarded.push({ gpa, len });
    return len;
  }
  discardHostRange(addr: bigint, len: number): number {
    this.hostDiscards.push({ addr, len });
    return len;
  }
  discardThread(onDone: () => void): DiscardWorker {
    this.worker.onDone = onDone;
    return this.worker;
  }
  hostRangeInRam(_addr: bigint, _len: number): boolean {
    return true;
  }
  private gate: () => boolean = () => true;
  setDispatchGate(gate: () => boolean): void {
    this.gate = gate;
  }
  get messagesWaiting(): boolean {
    return false;
  }
  resumeDispatch(): void {
    // No messages are modelled: nothing waits at the gate.
  }
  close(reason: string): void {
    if (!this.open) return;
    this.emit('closing', reason);
    this.open = false;
    this.emit('closed', reason);
  }

  // ---- what the frontend does ----
  /** SET_FEATURES, then every queue the features number started (as QEMU's vhost start). */
  start(features: bigint, messageVqBit: number | null = 23): void {
    this.emit('features', features);
    queueRoles(features, messageVqBit).forEach((_r, q) => this.emit('queueStarted', q, true));
  }
  stopQueues(features: bigint, messageVqBit: number | null = 23): void {
    queueRoles(features, messageVqBit).forEach((_r, q) => this.emit('queueStarted', q, false));
  }
  /** The guest writes actual (QEMU forwards it as SET_CONFIG; flags 1: an incoming migration's post_load). */
  writeActual(pages: number, flags = 0): void {
    this.config.writeUInt32LE(pages, 4);
    this.emit('setConfig', 4, 4, flags);
  }
  /** QMP balloon through our QEMU device: a write of num_pages (flags 1: the migrated target). */
  writeNumPages(pages: number, flags = 0): void {
    this.config.writeUInt32LE(pages, 0);
    this.emit('setConfig', 0, 4, flags);
  }
  /** Bytes in guest memory for a driver-readable descriptor. */
  put(bytes: Buffer): { addr: bigint; len: number } {
    const at = this.scratchUsed;
    bytes.copy(this.scratch, at);
    this.scratchUsed += (bytes.length + 7) & ~7;
    return { addr: BASE + BigInt(at), len: bytes.length };
  }
  /** Post one element on a queue and kick. Returns its index. */
  post(qidx: number, out: Buffer[], inn: Array<{ addr: bigint; len: number }> = []): number {
    const index = this.nextIndex++;
    const elem: Element = { handle: BigInt(index + 1), index, out: out.map((b) => this.put(b)), in: inn, truncated: false };
    const q = this.queues.get(qidx) ?? [];
    q.push(elem);
    this.queues.set(qidx, q);
    this.emit('kick', qidx);
    return index;
  }
  pfns(qidx: number, pfns: number[]): number {
    return this.post(qidx, [Buffer.from(Uint32Array.from(pfns).buffer)]);
  }
  pushedOn(qidx: number): number[] {
    return this.pushed.filter((p) => p.qidx === qidx).map((p) => p.index);
  }
}

/**
 * A stand-in for the shim's discard thread, with the C side's cancel and
 * drop semantics: a job that "runs" only when the test calls finish().
 * `suspended` stands for the shim's queue-stop callback (set by the test).
 */
export class FakeWorker implements DiscardWorker {
  job: PfnRange[] = [];
  readonly submitted: PfnRange[][] = [];
  readonly discarded: PfnRange[] = [];
  readonly cancels: PfnRange[] = [];
  /** Make submit() fail with this (-errno). */
  submitRet = 0;
  /** The next finish() fails every call with this errno. */
  failNext: { errno: number } | null = null;
  suspended = false;
  resumes = 0;
  drops = 0;
  onDone: () => void = () => undefined;
  private done: DiscardResult = { bytes: 0, calls: 0, failures: [] };

  submit(ranges: readonly PfnRange[]): number {
    if (this.submitRet) return this.submitRet;
    if (this.job.length) return -16;
    this.job = ranges.map((r) => ({ ...r }));
    this.submitted.push(ranges.map((r) => ({ ...r })));
    return 0;
  }
  cancel(c: PfnRange): number {
    this.cancels.push(c);
    let cut = 0;
    const out: PfnRange[] = [];
    for (const r of this.job) {
      const lo = Math.max(r.pfn, c.pfn);
      const hi = Math.min(r.pfn + r.count, c.pfn + c.count);
      if (lo >= hi) {
        out.push(r);
        continue;
      }
      cut += hi - lo;
      if (lo > r.pfn) out.push({ pfn: r.pfn, count: lo - r.pfn });
      if (hi < r.pfn + r.count) out.push({ pfn: hi, count: r.pfn + r.count - hi });
    }
    this.job = out;
    return cut;
  }
  drop(): number {
    this.drops++;
    const n = this.job.reduce((a, r) => a + r.count, 0);
    this.job = [];
    return n;
  }
  waitIdle(): void {
    if (!this.suspended) this.finish(false);
  }
  resume(): void {
    this.suspended = false;
    this.resumes++;
  }
  exportJob(): PfnRange[] {
    return this.job.map((r) => ({ ...r }));
  }
  collect(): { result: DiscardResult; pending: boolean } {
    const result = this.done;
    this.done = { bytes: 0, calls: 0, failures: [] };
    return { result, pending: this.job.length > 0 };
  }
  /** Run the job to its end (and, with notify, say so as the eventfd would). */
  finish(notify = false): void {
    for (const r of this.job) {
      this.done.calls++;
      if (this.failNext) {
        this.done.failures = [{ gpa: r.pfn * PAGE, len: r.count * PAGE, errno: this.failNext.errno, count: this.done.calls }];
      } else {
        this.discarded.push(r);
        this.done.bytes += r.count * PAGE;
      }
    }
    this.job = [];
    if (notify) this.onDone();
  }
  get discardedPages(): number {
    return this.discarded.reduce((n, r) => n + r.count, 0);
  }
}
