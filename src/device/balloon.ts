// The virtio-balloon device: config space, the balloon size, and one handler
// per virtqueue role. The transport hands it a connection; the controller
// (policy, control socket) talks to it through setTarget() and its events.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import type { Logger } from '../log.js';
import type { DeviceTransport, Element } from './transport.js';
import {
  BALLOON_PAGE_SIZE, CONFIG_OFFSET_ACTUAL, CONFIG_OFFSET_NUM_PAGES, CONFIG_SIZE, QueueRole,
  VIRTIO_BALLOON_F_DEFLATE_ON_OOM, VIRTIO_BALLOON_F_MUST_TELL_HOST,
  VHOST_USER_PROTOCOL_F_CONFIG, VHOST_USER_PROTOCOL_F_DEVICE_STATE, VHOST_USER_PROTOCOL_F_SLAVE_REQ, VHOST_SET_CONFIG_TYPE_MASTER, VHOST_SET_CONFIG_TYPE_MIGRATION,
} from '../virtio/constants.js';
import { decodeConfig, encodeConfig, touchesField } from '../virtio/config.js';
import { DEFAULT_FEATURE_CHOICE, FeatureChoice, featureNames, has, MAX_QUEUES, offeredFeatures, queueRoles } from '../virtio/features.js';
import { BadInputCounter, BadInputKind } from './bad-input.js';
import { DeviceCounters, newCounters } from './counters.js';
import { BackgroundDiscard, DiscardResult, discardRanges } from './discard.js';
import type { BalloonDeviceOptions, DeviceEvents, PolicyHandover, StatsSample } from './device-types.js';
import { readOut } from './element-io.js';
import { BalloonLedger } from './ledger.js';
import { parseMessages } from './messages.js';
import { clipToRam, decodePfns, PfnRange, pfnsToRanges, RamRegion, rangeBytes } from './pfn.js';
import { decodeState, encodeState } from './device-state.js';
import { discardReportSteps } from './reporting.js';
import { freeable, hasHugePages, hugeSpans } from './huge-pages.js';
import { Renaming } from './renaming.js';
import { ContinuityAction, GuestContinuity } from './restart.js';
import { parseStats } from './stats.js';
import { StatsBuffer } from './stats-queue.js';

export type { BalloonDeviceOptions, DeviceEvents, GuestPressureSource, StatsSample } from './device-types.js';

/** Most PFN bytes one inflate/deflate element may carry (1 GiB of pages). */
const MAX_PFN_BYTES = 1 << 20;
/** Most bytes read from one stats or message element. */
const MAX_SMALL_BYTES = 64 << 10;
/**
 * Where stats and message elements are read, for every device of the
 * process (64 KiB each was 6.4 MiB for 100 VMs): handlers run one at a time
 * on the loop and parse the bytes before they return, keeping no view.
 */
const smallScratch = Buffer.alloc(MAX_SMALL_BYTES);
const ENOTCONN = 107;
/**
 * Work per device per event-loop turn: one device's guest must not hold up
 * the other VMs' fds (host daemon: one loop for all). Elements are handled
 * in steps and the clock is read between steps; what is left goes on in
 * the next turn (setImmediate). A step is at most PFN_SLICE PFNs (~0.3 ms
 * shuffled on this machine's 2 cores) or one discard of LOOP_DISCARD_CHUNK
 * bytes (~0.6 ms of populated shmem).
 */
const TURN_BUDGET_MS = 1;
const PFN_SLICE = 1024;
const LOOP_DISCARD_CHUNK = 2 << 20;

/** The PMD (transparent huge page) size, 2 MiB where the kernel does not say. */
let pmd = 0;
const pmdBytes = (): number => {
  if (!pmd) {
    try {
      pmd = Number(readFileSync('/sys/kernel/mm/transparent_hugepage/hpage_pmd_size', 'utf8')) || 2 << 20;
    } catch {
      pmd = 2 << 20;
    }
  }
  return pmd;
};

/** What a step yields when it waits for the discard thread (not for time). */
const WAIT = 'wait';
type Step = void | typeof WAIT;

/** An element being handled in steps (see TURN_BUDGET_MS); returns whether it was pushed. */
interface OpenElement {
  elem: Element;
  steps: Generator<Step, boolean, void>;
}

export class BalloonDevice extends EventEmitter<DeviceEvents> {
  readonly choice: FeatureChoice;
  readonly counters: DeviceCounters = newCounters();
  readonly badInput: BadInputCounter;
  private conn: DeviceTransport | null = null;
  private roles: QueueRole[] = [];
  private ram: RamRegion[] = [];
  /** Some region is on huge pages; the largest backing page; pages the discard thread's chunks cannot free. */
  private huge = false;
  private largestPage = BALLOON_PAGE_SIZE;
  private giantPages = false;
  private negotiated = 0n;
  private targetPages = 0;
  /** num_pages in the config: the target, or a renaming dip below it. */
  private presentedPages = 0;
  private actualPages = 0;
  /** After an incoming migration: the guest names its balloon pages again (renaming.ts). */
  private readonly renaming = new Renaming();
  /** `actual` came with SET_CONFIG of type MIGRATION on this connection. */
  private incoming = false;
  /** Pages the source's state named (device-state.ts): in the ledger, freed here once guest RAM is mapped. */
  private arrived: PfnRange[] = [];
  /** The policy's part of the state a migration carries; set by the controller. */
  policyHandover: () => PolicyHandover = () => ({ hold: null, guestPressureAgeMs: null });
  /** Pages in the balloon, by PFN (see ledger.ts). */
  private readonly ledger = new BalloonLedger();
  /** Pause, reset, reconnect: what becomes of the balloon and of pending discards (restart.ts). */
  private readonly continuity = new GuestContinuity();
  private hadFrontend = false;
  /** CONFIG_CHANGE_MSG totals of closed connections. */
  private readonly configChangeBase = { sent: 0, waits: 0 };
  private readonly statsBuffer: StatsBuffer;
  private deferred: BackgroundDiscard | null = null;
  private readonly discardMode: 'deferred' | 'immediate';
  private readonly shmemHugeDiscard: 'any' | 'whole';
  private latest: StatsSample | null = null;
  /** The last PFN buffer was a one-PFN inflate: a one-PFN deflate next is balloon compaction (virtballoon_migratepage), not OOM. */
  private lastOnePageInflate = false;
  /** Queues with elements to handle, served in turns (TURN_BUDGET_MS). */
  private readonly ready = new Set<number>();
  /** Per queue, the element under way across turns. */
  private readonly open = new Map<number, OpenElement>();
  /** Queues whose open element waits for the discard thread's chunk under way. */
  private readonly waitingForThread = new Set<number>();
  private turnScheduled = false;
  private inTurn = false;
  /** Until when the current turn may go on (performance.now()). */
  private turnDeadline = 0;
  private readonly maxPerTurn: number;
  private readonly log: Logger;

  constructor(opts: BalloonDeviceOptions) {
    super();
    this.choice = opts.features ?? DEFAULT_FEATURE_CHOICE;
    this.statsBuffer = new StatsBuffer(opts.statsIntervalMs ?? 5000);
    this.discardMode = opts.discard ?? 'deferred';
    this.shmemHugeDiscard = opts.shmemHugeDiscard ?? 'any';
    this.maxPerTurn = opts.maxElementsPerTurn ?? 64;
    this.log = opts.log;
    this.badInput = new BadInputCounter(opts.log);
  }

  /** What vu_init needs to present this device. */
  connectionOptions() {
    return {
      maxQueues: MAX_QUEUES,
      deviceFeatures: offeredFeatures(this.choice),
      // CONFIG comes with the get/set_config callbacks; SLAVE_REQ is in
      // libvhost-user's default set. Both are required below. DEVICE_STATE:
      // the page set and the hold move with a migration (device-state.ts).
      protocolFeatures: 1n << BigInt(VHOST_USER_PROTOCOL_F_DEVICE_STATE),
      configLen: CONFIG_SIZE,
    };
  }

  get connected(): boolean {
    return this.conn?.open === true;
  }

  get target(): number {
    return this.targetPages;
  }

  get actual(): number {
    return this.actualPages;
  }

  /** Balloon size as counted from the queues (pages). */
  get balloonPages(): number {
    return this.continuity.provisionalBalloon ?? this.ledger.size;
  }

  get features(): bigint {
    return this.negotiated;
  }

  get queueRoles(): readonly QueueRole[] {
    return this.roles;
  }

  get latestStats(): StatsSample | null {
    return this.latest;
  }

  /** Guest RAM in bytes, from the memory table (0 until known). */
  get guestRamBytes(): number {
    return this.ram.reduce((n, r) => n + r.size, 0);
  }

  /**
   * Set the target balloon size (num_pages) and tell the frontend, which
   * interrupts the guest. Works before a frontend connects: the value is
   * presented when it does.
   */
  setTarget(pages: number): void {
    if (!Number.isInteger(pages) || pages < 0 || pages > 0xffffffff) {
      throw new RangeError(`target ${pages} pages is not a u32 page count`);
    }
    if (pages === this.targetPages) return;
    this.targetPages = pages;
    const before = this.presentedPages;
    this.writeConfig();
    if (this.presentedPages !== before) this.announce();
  }

  /** Tell the frontend num_pages changed (CONFIG_CHANGE_MSG). */
  private announce(): void {
    if (!this.conn?.open) return;
    const ret = this.conn.configChanged();
    if (ret === 1) this.log.debug('backend channel full: CONFIG_CHANGE_MSG goes out when it drains');
    else if (ret === -ENOTCONN) this.log.debug('no backend channel yet: the frontend reads the target when it sets up');
    else if (ret < 0) this.log.warn({ errno: -ret }, 'could not send CONFIG_CHANGE_MSG; the guest sees the new target at its next config read');
  }

  /** The balloon changed: a renaming dip may start or end. */
  private refreshPresented(): void {
    if (!this.renaming.running) return;
    const before = this.presentedPages;
    this.writeConfig();
    if (!this.renaming.running) this.log.info({ unnamedPages: this.ledger.unnamed }, 'balloon named again after the incoming migration');
    if (this.presentedPages !== before) this.announce();
  }


  /** CONFIG_CHANGE_MSGs sent whole and sends that waited for room, over all connections; one waiting now. */
  configChangeState(): { sent: number; waits: number; pending: boolean } {
    const cur = this.conn?.open ? this.conn.configChangeState() : { sent: 0, waits: 0, pending: false };
    return { sent: this.configChangeBase.sent + cur.sent, waits: this.configChangeBase.waits + cur.waits, pending: cur.pending };
  }

  /** Take over a new frontend connection (one at a time). */
  attach(conn: DeviceTransport): void {
    if (this.conn?.open) throw new Error('a frontend is already attached');
    this.conn = conn;
    this.roles = [];
    this.negotiated = 0n;
    this.ready.clear();
    this.deferred = null;
    this.actualPages = 0;
    this.renaming.stop();
    this.incoming = false;
    this.arrived = [];
    this.continuity.attached();
    // Before the frontend reads the config: the controller sets the last
    // guest's target aside. A target set before any frontend came is for
    // this one.
    if (this.hadFrontend) this.emit('attached');
    this.hadFrontend = true;
    this.writeConfig();
    // No message between two steps of an element: it could stop the queue
    // or replace the memory table under it.
    conn.setDispatchGate(() => this.open.size === 0);
    conn.on('features', (f) => this.onFeatures(f));
    conn.on('closing', () => this.onClosing());
    conn.on('queueStarted', (q, started) => this.onQueueStarted(q, started));
    conn.on('kick', (q) => this.service(q));
    conn.on('setConfig', (off, size, flags) => this.onSetConfig(off, size, flags));
    conn.on('panic', (msg) => this.onPanic(msg));
    conn.on('stateSave', () => this.onStateSave());
    conn.on('stateLoaded', (bytes) => this.onStateLoaded(bytes));
    conn.on('stateFailed', (dir, errno) => this.log.warn({ direction: dir === 0 ? 'save' : 'load', errno },
      'migration: the device state transfer failed; QEMU fails the migration and the source runs on'));
    conn.once('closed', (reason) => this.onClosed(reason));
  }

  /** A second frontend tried to connect while one is attached. */
  refuseFrontend(fd: number): void {
    this.record('second_frontend', { fd });
  }

  /** Drop the current frontend, if any. */
  detach(reason: string): void {
    this.conn?.close(reason);
  }

  private writeConfig(): void {
    this.presentedPages = this.renaming.present(this.targetPages, this.ledger.size, this.ledger.unnamed);
    this.conn?.configWrite(0, encodeConfig({
      num_pages: this.presentedPages, actual: this.actualPages, free_page_hint_cmd_id: 0, poison_val: 0,
    }));
  }

  /** Guest RAM from the memory table, and what its page sizes mean for discards (huge-pages.ts). */
  private setRam(ram: RamRegion[]): void {
    const was = this.largestPage;
    // --shmem-huge-discard whole: shmem RAM as if on PMD-sized pages (its THPs are never split by a discard).
    if (this.shmemHugeDiscard === 'whole') ram = ram.map((r) => ((r.pageBytes ?? BALLOON_PAGE_SIZE) <= BALLOON_PAGE_SIZE ? { ...r, pageBytes: pmdBytes() } : r));
    this.ram = ram;
    this.huge = hasHugePages(ram);
    this.largestPage = Math.max(BALLOON_PAGE_SIZE, ...ram.map((r) => r.pageBytes ?? BALLOON_PAGE_SIZE));
    this.giantPages = this.largestPage > LOOP_DISCARD_CHUNK;
    if (this.huge && this.largestPage !== was) {
      const how = this.shmemHugeDiscard === 'whole' ? ' (or shmem, --shmem-huge-discard whole)' : '';
      this.log.info({ pageBytes: this.largestPage }, `guest RAM on ${this.largestPage / 2 ** 20} MiB huge pages${how}: a huge page is discarded once all of it is ballooned`);
    }
  }

  private onFeatures(f: bigint): void {
    const conn = this.conn;
    if (!conn) return;
    this.negotiated = f;
    this.roles = queueRoles(f, this.choice.messageVqBit);
    this.setRam(conn.regions());
    const proto = conn.protocolFeatures();
    if (!has(proto, VHOST_USER_PROTOCOL_F_CONFIG) || !has(proto, VHOST_USER_PROTOCOL_F_SLAVE_REQ)) {
      this.log.warn({ protocolFeatures: proto.toString(16) },
        'frontend did not negotiate CONFIG and SLAVE_REQ: target changes cannot reach the guest');
    }
    // Features come again on every start (after a pause or a reset): the
    // thread and its pending pages stay; the queue start decides about them.
    if (this.discardMode === 'deferred' && has(f, VIRTIO_BALLOON_F_MUST_TELL_HOST)) {
      if (!this.deferred) {
        let bg: BackgroundDiscard | null = null;
        const worker = conn.discardThread(() => {
          bg?.onJobDone();
          this.onThreadChunk();
        });
        bg = new BackgroundDiscard(worker, (r) => this.accountDiscard(r));
        this.deferred = bg;
      }
    } else if (this.deferred) {
      this.dropPending('MUST_TELL_HOST no longer negotiated');
      this.deferred = null;
    }
    this.log.info({ features: featureNames(f, this.choice.messageVqBit), queues: this.roles, deferredDiscard: this.deferred !== null },
      'features negotiated');
    this.emit('connected', { features: f, roles: this.roles });
  }

  private onQueueStarted(qidx: number, started: boolean): void {
    const conn = this.conn;
    if (!conn) return;
    const role = this.roles[qidx];
    this.log.debug({ qidx, role, started }, 'queue state');
    // The memory table may have changed since negotiation (hotplug, reset).
    const before = this.guestRamBytes;
    this.setRam(conn.regions());
    if (this.guestRamBytes !== before) this.emit('memory', this.guestRamBytes);
    conn.enableQueue(qidx, started);
    if (!started && role === 'stats') this.statsBuffer.release(conn);
    const isInflate = role === 'inflate' || qidx === 0;
    if (!started) {
      // The shim suspended the discard thread before QEMU got its reply.
      if (isInflate) this.deferred?.suspend();
      this.continuity.queueStopped(isInflate, conn.queueLastAvail(qidx));
    } else {
      for (const a of this.continuity.queueStarted(isInflate, conn.queueLastAvail(qidx))) this.act(a);
    }
    if (started) this.service(qidx);
  }

  private act(a: ContinuityAction): void {
    switch (a.kind) {
      case 'resume':
        this.deferred?.resume();
        break;
      case 'reset':
        this.renaming.stop();
        this.dropPending(a.why);
        if (this.ledger.size === 0) break;
        this.ledger.clear();
        this.emit('balloonChanged', 0);
        break;
      case 'same-guest': {
        // `actual` is the frontend's word: never more than the RAM it mapped.
        const ramPages = Math.floor(this.guestRamBytes / BALLOON_PAGE_SIZE);
        this.ledger.recover(ramPages > 0 ? Math.min(a.actual, ramPages) : a.actual);
        const pages = a.carried.reduce((n, r) => n + r.count, 0);
        if (pages && this.deferred) {
          this.log.info({ pages }, 'discarding pages the guest ballooned before it reconnected');
          this.deferred.add(a.carried);
        }
        this.freeArrived();
        // Arrived by migration: the pages are backed again here (renaming.ts).
        if (this.incoming && this.ledger.unnamed > 0 && this.deferred && this.roles.includes('deflate')) {
          this.log.info({ unnamedPages: this.ledger.unnamed }, 'incoming migration: the guest names its balloon again so its pages can be freed');
          this.renaming.start();
          this.refreshPresented();
        }
        this.incoming = false;
        break;
      }
      case 'new-guest': {
        this.incoming = false;
        this.arrived = [];
        const had = this.ledger.size;
        this.ledger.clear();
        if (had || a.carried.length) this.log.info({ pages: had }, 'a new guest: the last frontend\'s balloon is forgotten');
        this.emit('newGuest');
        this.emit('balloonChanged', 0);
        break;
      }
    }
  }

  private onSetConfig(offset: number, size: number, flags = VHOST_SET_CONFIG_TYPE_MASTER): void {
    const conn = this.conn;
    if (!conn) return;
    const c = decodeConfig(conn.configRead(0, CONFIG_SIZE));
    if (touchesField(offset, size, CONFIG_OFFSET_ACTUAL)) {
      if (flags === VHOST_SET_CONFIG_TYPE_MIGRATION) this.incoming = true;
      const r = this.continuity.actualWritten(c.actual);
      if (r === 'reported' && c.actual > 0) this.emit('recovered', c.actual);
      else if (r && r !== 'reported') this.act(r);
      if (c.actual !== this.actualPages) {
        this.actualPages = c.actual;
        this.emit('actual', c.actual);
      }
    }
    if (touchesField(offset, size, CONFIG_OFFSET_NUM_PAGES)) {
      // Keep our own target in config until the controller decides.
      const requested = c.num_pages;
      this.writeConfig();
      // MIGRATION: the source's target arriving with the device state, not QMP.
      if (flags === VHOST_SET_CONFIG_TYPE_MIGRATION) this.emit('incomingTarget', requested);
      else this.emit('frontendTarget', requested);
    }
  }

  /** Migration, source: the stopped device's state for the destination's daemon (device-state.ts). */
  private onStateSave(): void {
    const conn = this.conn;
    if (!conn?.giveState) return;
    let state: Buffer | null = null;
    let runs = 0;
    try {
      const named = this.ledger.runs();
      runs = named.length;
      state = encodeState({
        actualPages: this.actualPages, targetPages: this.targetPages, unnamedPages: this.ledger.unnamed,
        runs: named, ...this.policyHandover(),
      });
    } finally {
      // null fails QEMU's check, and so the migration: better than a hang on the pipe.
      const ret = conn.giveState(state);
      if (state && ret === 0) {
        this.log.info({ bytes: state.length, pages: this.ledger.size, runs, targetPages: this.targetPages },
          'migration: the balloon\'s page set and hold go to the destination');
      } else {
        this.log.error({ errno: -ret }, 'migration: could not hand the device state to QEMU; the migration fails');
      }
    }
  }

  /**
   * Migration, destination: the source's state. Checked whole before any of
   * it is taken: a bad one fails QEMU's check, so the migration fails and
   * the source runs on. Its pages join the ledger now and are freed once
   * the queues start (guest RAM is mapped then: freeArrived()).
   */
  private onStateLoaded(bytes: number): void {
    const conn = this.conn;
    if (!conn?.takeState || !conn.answerState) return;
    // QEMU waits for the answer: whatever happens below, it gets one.
    let ok = false;
    try {
      ok = this.takeIncomingState(conn.takeState(bytes), bytes);
    } catch (err) {
      this.log.error({ err }, 'incoming migration: taking the source\'s state failed; QEMU fails the migration');
    } finally {
      conn.answerState(ok);
    }
  }

  private takeIncomingState(buf: Buffer | null, bytes: number): boolean {
    const r = buf ? decodeState(buf) : { ok: false as const, error: 'the state was gone before it was read' };
    if (!r.ok) {
      this.record('bad_device_state', { bytes, error: r.error });
      return false;
    }
    const s = r.state;
    this.ledger.clear();
    this.ledger.inflate(s.runs);
    this.arrived = s.runs;
    this.log.info({ pages: this.ledger.size, unnamedPages: s.unnamedPages, targetPages: s.targetPages, hold: s.hold?.owner ?? null },
      'incoming migration: the source\'s page set and hold arrived');
    this.emit('balloonChanged', this.ledger.size);
    this.emit('incomingState', { targetPages: s.targetPages, hold: s.hold, guestPressureAgeMs: s.guestPressureAgeMs });
    return true;
  }

  /** Free the pages an incoming migration named (QEMU's incoming RAM allocated them all), once guest RAM is mapped. */
  private freeArrived(): void {
    const conn = this.conn;
    const runs = this.arrived;
    this.arrived = [];
    if (!conn || runs.length === 0) return;
    const { inside, outside } = clipToRam(runs, this.ram);
    if (outside.length) {
      const n = this.ledger.deflate(outside).removed;
      this.record('pfn_outside_ram', { queue: 'migration', rejected: n }, n);
    }
    const free = this.huge ? freeable(inside, this.ram, (r) => this.ledger.hasAll(r)) : inside;
    this.log.info({ pages: free.reduce((n, r) => n + r.count, 0) }, 'incoming migration: freeing the ballooned pages');
    if (this.deferred && !this.giantPages) {
      this.deferred.add(free);
      return;
    }
    for (const step of this.discardOnLoop(conn, free)) void step;
  }

  private onPanic(message: string): void {
    this.record('device_error', { message });
    // libvhost-user marks the device broken and never clears it: start over
    // with the next connection (QEMU reconnects when `reconnect=` is set).
    this.conn?.close(`device error: ${message}`);
  }

  /**
   * Still mapped: take out what was acknowledged but not discarded. Not
   * discarded now (the guest may be reset before it reconnects); the next
   * connection discards it if it is the same guest (restart.ts).
   */
  private onClosing(): void {
    // Elements under way are dropped unacknowledged: QEMU hands them out
    // again to the next connection (a deflate's pages are cut out of the
    // pending discards below, with the rest, only when it comes back).
    for (const o of this.open.values()) {
      try {
        o.steps.return(false);
      } catch {
        continue; // running (this close came from inside one of its steps): it drops the element itself
      }
      this.conn?.drop(o.elem);
    }
    this.open.clear();
    this.ready.clear();
    this.waitingForThread.clear();
    const cc = this.conn?.configChangeState();
    if (cc) {
      this.configChangeBase.sent += cc.sent;
      this.configChangeBase.waits += cc.waits;
    }
    const runs = this.deferred?.exportPending() ?? [];
    this.continuity.closing(runs);
    if (runs.length) {
      this.log.info({ pages: runs.reduce((n, r) => n + r.count, 0) },
        'frontend gone with pages not yet discarded: kept for its reconnection');
    }
    this.deferred = null;
  }

  private onClosed(reason: string): void {
    this.renaming.stop();
    this.statsBuffer.release(this.conn);
    this.conn = null;
    this.roles = [];
    this.ready.clear();
    this.log.info({ reason }, 'frontend disconnected');
    this.emit('disconnected', reason);
  }

  private readonly recorder = (kind: BadInputKind, detail?: Record<string, unknown>, n?: number): void =>
    this.record(kind, detail, n);

  private record(kind: BadInputKind, detail: Record<string, unknown> = {}, n = 1): void {
    this.counters.badInput[kind] = (this.counters.badInput[kind] ?? 0) + n;
    this.badInput.record(kind, detail, n);
  }

  /** The discard thread finished a chunk (or its job): elements waiting for it go on. */
  private onThreadChunk(): void {
    if (this.waitingForThread.size === 0) return;
    for (const q of this.waitingForThread) this.ready.add(q);
    this.waitingForThread.clear();
    const conn = this.conn;
    if (conn?.open && !this.inTurn && !this.turnScheduled) this.turn();
  }

  /** A queue has elements (a kick, a start): serve it now, or in the turn already planned. */
  private service(qidx: number): void {
    const conn = this.conn;
    if (!conn?.open || this.roles[qidx] === undefined) return;
    this.ready.add(qidx);
    if (!this.inTurn && !this.turnScheduled) this.turn();
  }

  /**
   * One turn of this device: the ready queues in turn, one element each,
   * each element in steps, until TURN_BUDGET_MS is spent (or maxPerTurn
   * elements of a queue were started); the rest goes on in the next turn.
   * Each queue that got elements back is notified once per turn.
   */
  private turn(): void {
    const conn = this.conn;
    if (!conn?.open) return;
    this.inTurn = true;
    this.turnDeadline = performance.now() + TURN_BUDGET_MS;
    const pushed = new Set<number>();
    const started = new Map<number, number>();
    let stop = false;
    try {
      while (!stop && this.ready.size > 0 && this.conn === conn && conn.open) {
        let progressed = false;
        for (const qidx of this.ready) {
          if (this.conn !== conn || !conn.open) break;
          let o = this.open.get(qidx);
          if (!o) {
            const role = this.roles[qidx];
            const n = started.get(qidx) ?? 0;
            if (role === undefined) {
              this.ready.delete(qidx);
              continue;
            }
            if (n >= this.maxPerTurn) continue;
            const elem = conn.pop(qidx);
            if (!elem) {
              this.ready.delete(qidx);
              continue;
            }
            started.set(qidx, n + 1);
            o = { elem, steps: this.work(role, qidx, elem) };
            this.open.set(qidx, o);
          }
          progressed = true;
          let r: IteratorResult<Step, boolean>;
          do {
            r = o.steps.next();
          } while (!r.done && r.value !== WAIT && performance.now() < this.turnDeadline && this.conn === conn);
          if (!r.done && r.value === WAIT) {
            // Back when the discard thread's chunk is done (onThreadChunk).
            this.ready.delete(qidx);
            this.waitingForThread.add(qidx);
            continue;
          }
          if (r.done) {
            this.open.delete(qidx);
            if (r.value) pushed.add(qidx);
            // Messages held back while the element was under way go first.
            if (this.open.size === 0 && conn.messagesWaiting) stop = true;
          }
          if (performance.now() >= this.turnDeadline) stop = true;
          if (stop) break;
        }
        if (!progressed) break; // every ready queue had its maxPerTurn elements
      }
    } finally {
      this.inTurn = false;
    }
    if (this.conn !== conn || !conn.open) return;
    for (const q of pushed) conn.notify(q);
    if (this.open.size === 0) conn.resumeDispatch();
    if (this.ready.size > 0 && !this.turnScheduled) {
      // More may be waiting: go on after other fds had their turn.
      this.turnScheduled = true;
      setImmediate(() => {
        this.turnScheduled = false;
        if (this.conn === conn) this.turn();
      });
    }
  }

  /** The steps of one element; returns whether it was pushed back (needs a notify). */
  private *work(role: QueueRole, qidx: number, elem: Element): Generator<Step, boolean, void> {
    const conn = this.conn!;
    switch (role) {
      case 'inflate':
      case 'deflate':
        yield* this.handlePfns(role, elem);
        break;
      case 'stats':
        return this.handleStats(qidx, elem);
      case 'message':
        this.handleMessages(elem);
        break;
      case 'reporting':
        yield* this.handleReporting(elem);
        break;
      case 'free_page':
        break;
    }
    if (this.conn !== conn || !conn.open) {
      conn.drop(elem); // the connection went during the last step
      return false;
    }
    conn.push(qidx, elem, 0);
    return true;
  }

  /** Out of time for this turn: a point where the element's steps may pause. */
  private get late(): boolean {
    return performance.now() >= this.turnDeadline;
  }

  private *handlePfns(role: 'inflate' | 'deflate', elem: Element): Generator<Step, void, void> {
    const conn = this.conn;
    if (!conn) return;
    const buf = readOut(conn, elem, MAX_PFN_BYTES, this.recorder);
    if (!buf) return;
    if (buf.length & 3) this.record('pfn_buffer_odd_length', { index: elem.index, bytes: buf.length });
    // Linux's buffers (256 PFNs) are one slice; each slice decoded when its turn comes.
    const count = buf.length >>> 2;
    const pageMove = role === 'deflate' && count === 1 && this.lastOnePageInflate;
    this.lastOnePageInflate = role === 'inflate' && count === 1;
    for (let at = 0; at < count; at += PFN_SLICE) {
      if (at > 0) yield;
      const slice = decodePfns(buf.subarray(4 * at, 4 * Math.min(count, at + PFN_SLICE))).pfns;
      const { ranges, rejected } = pfnsToRanges(slice, this.ram);
      if (rejected) this.record('pfn_outside_ram', { queue: role, rejected, of: slice.length }, rejected);
      if (role === 'inflate') {
        const { added, duplicate } = this.ledger.inflate(ranges);
        if (duplicate) this.record('pfn_already_ballooned', { index: elem.index, pages: duplicate }, duplicate);
        // Huge-page RAM: only huge pages now wholly ballooned (the rest waits for its other pages).
        const free = this.huge ? freeable(ranges, this.ram, (r) => this.ledger.hasAll(r)) : ranges;
        // The discard thread works in 2 MiB chunks: larger (1 GiB) pages are freed here, one call each.
        if (this.deferred && !this.giantPages) this.deferred.add(free);
        else yield* this.discardOnLoop(conn, free);
        this.counters.inflatedPages += added;
        if (added) this.emit('inflated', added);
        if (added) this.refreshPresented();
      } else {
        // Pages fault back in on use: deflate needs no host work, but a page
        // still waiting for its discard must not be discarded any more. Each
        // cut may wait for the discard thread's chunk under way.
        // The loop never waits for it: a range under way waits, its element
        // held (WAIT), until the thread says the chunk is done.
        if (this.deferred) {
          // A huge page waiting for its discard is no longer whole: all of it stays.
          for (const r of this.huge ? hugeSpans(ranges, this.ram) : ranges) {
            while (!this.deferred.tryRemove(r)) yield WAIT;
            if (this.late) yield;
          }
        }
        const before = this.ledger.size;
        const { removed, unnamed, unknown } = this.ledger.deflate(ranges);
        if (unknown) this.record('pfn_not_ballooned', { index: elem.index, pages: unknown }, unknown);
        const pages = removed + unnamed;
        this.counters.deflatedPages += pages;
        // The guest deflating below num_pages on its own is deflate-on-OOM;
        // compaction moving a page (one in, then one out) is not.
        const requested = this.presentedPages < before;
        if (pages) this.emit('deflated', pages, requested);
        if (pages) this.refreshPresented();
        if (pages && !requested && !pageMove && has(this.negotiated, VIRTIO_BALLOON_F_DEFLATE_ON_OOM)) {
          this.counters.guestPressure['deflate-on-oom']++;
          this.emit('guestPressure', { source: 'deflate-on-oom', count: 1 });
        }
      }
    }
  }

  /** --discard immediate (or no MUST_TELL_HOST): discard before the ack, in pieces of LOOP_DISCARD_CHUNK (or one huge page). */
  private *discardOnLoop(conn: DeviceTransport, ranges: readonly PfnRange[]): Generator<Step, void, void> {
    const chunk = Math.max(LOOP_DISCARD_CHUNK, this.largestPage);
    for (const r of ranges) {
      const { gpa, len } = rangeBytes(r);
      for (let off = 0; off < len; off += chunk) {
        const n = Math.min(chunk, len - off);
        this.accountDiscard(discardRanges([{ pfn: (gpa + off) / BALLOON_PAGE_SIZE, count: n / BALLOON_PAGE_SIZE }],
          (g, l) => conn.discard(g, l)));
        if (this.late) yield;
      }
    }
  }

  private handleStats(qidx: number, elem: Element): boolean {
    const buf = readOut(this.conn!, elem, MAX_SMALL_BYTES, this.recorder, smallScratch);
    if (buf) {
      const parsed = parseStats(buf);
      if (parsed.trailingBytes) this.record('truncated_stats', { bytes: buf.length });
      if (parsed.unknownTags) this.counters.unknownStatsTags += parsed.unknownTags;
      this.latest = { stats: parsed.stats, at: performance.now(), wallTime: new Date().toISOString() };
      this.counters.statsSamples++;
      this.emit('stats', this.latest);
    }
    return this.statsBuffer.keep(this.conn!, qidx, elem);
  }

  /** Host memory backing this guest's RAM (its memfd's allocated blocks), or null when not known. */
  backedBytes(): number | null {
    return this.conn?.backedBytes?.() ?? null;
  }

  /** Ask the guest for stats now instead of at the next interval. */
  requestStats(): boolean {
    const qidx = this.roles.indexOf('stats');
    return qidx >= 0 && this.conn !== null && this.statsBuffer.request(this.conn, qidx);
  }

  private accountDiscard(r: DiscardResult): void {
    this.counters.discardedBytes += r.bytes;
    this.counters.discardCalls += r.calls;
    for (const f of r.failures) this.record('discard_failed', { gpa: f.gpa, len: f.len, errno: f.errno }, f.count ?? 1);
  }

  private dropPending(why: string): void {
    const n = this.deferred?.drop() ?? 0;
    if (n) this.log.info({ pages: n, why }, 'dropped pending discards');
  }

  /** Discard everything still pending now (tests, benchmarks, shutdown). */
  flushDiscards(): void {
    this.deferred?.flush();
  }

  get pendingDiscardPages(): number {
    return this.deferred?.pendingPages ?? 0;
  }

  private handleMessages(elem: Element): void {
    const buf = readOut(this.conn!, elem, MAX_SMALL_BYTES, this.recorder, smallScratch);
    if (!buf) return;
    const m = parseMessages(buf);
    if (m.trailingBytes) this.record('message_odd_length', { bytes: buf.length });
    if (m.unknown) this.record('unknown_message', { count: m.unknown }, m.unknown);
    if (m.pressure) {
      this.counters.guestPressure.message += m.pressure;
      this.emit('guestPressure', { source: 'message', count: m.pressure });
    }
  }

  private *handleReporting(elem: Element): Generator<Step, void, void> {
    const conn = this.conn;
    if (!conn) return;
    const r = yield* discardReportSteps(elem, this.recorder, (addr, len) => conn.discardHostRange(addr, len),
      { chunk: Math.max(LOOP_DISCARD_CHUNK, this.largestPage), inRam: (addr, len) => conn.hostRangeInRam(addr, len) },
      this.huge && conn.hostPageBytes ? (addr) => conn.hostPageBytes!(addr) : undefined);
    this.counters.discardedBytes += r.bytes;
    this.counters.discardCalls += r.calls;
    this.counters.reportedPages += r.pages;
    if (r.pages) this.emit('reported', r.pages);
  }
}
