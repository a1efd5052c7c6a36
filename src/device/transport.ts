// What the balloon device needs of its frontend connection. The real one is
// VhostUserConnection (libvhost-user through the shim); unit tests of the
// device and the controller use an in-process fake (test/unit/fake-transport.ts).
import type { EventEmitter } from 'node:events';
import type { ConnectionEvents, Element } from '../transport/connection.js';
import type { DiscardWorker } from './discard.js';
import type { RamRegion } from './pfn.js';

export type { ConnectionEvents, Element };

export interface DeviceTransport extends Pick<EventEmitter<ConnectionEvents>, 'on' | 'once'> {
  /** Connected and not closing. */
  readonly open: boolean;
  protocolFeatures(): bigint;
  /** Guest RAM of the memory table. */
  regions(): RamRegion[];
  configWrite(offset: number, data: Buffer): void;
  configRead(offset: number, len: number): Buffer;
  /** Tell the frontend the config changed: 0 sent, 1 queued, -errno. */
  configChanged(): number;
  configChangeState(): { sent: number; waits: number; pending: boolean };
  enableQueue(qidx: number, enable: boolean): void;
  /** The queue's avail index as the backend keeps it (GET/SET_VRING_BASE). */
  queueLastAvail(qidx: number): number;
  pop(qidx: number): Element | null;
  push(qidx: number, elem: Element, len: number): void;
  /** Free an element that will not be pushed. */
  drop(elem: Element): void;
  notify(qidx: number): void;
  /** Copy guest memory at a host address from an element. */
  read(addr: bigint, len: number, into?: Buffer): Buffer;
  /** Discard guest RAM [gpa, gpa+len): bytes or -errno. */
  discard(gpa: number, len: number): number;
  /** Discard guest RAM at an element's host address: bytes or -errno. */
  discardHostRange(addr: bigint, len: number): number;
  /** The connection's discard thread, in pages; onDone runs when a job is finished (or a chunk a deflate waits on). */
  discardThread(onDone: () => void): DiscardWorker;
  /** Is [addr, addr+len) wholly inside one mapped region (checked before a piecewise discard)? */
  hostRangeInRam(addr: bigint, len: number): boolean;
  /** Migration (vhost-user device state transfer); absent: the transport cannot carry state. See VhostUserConnection. */
  giveState?(state: Buffer | null): number;
  takeState?(bytes: number): Buffer | null;
  answerState?(ok: boolean): number;
  /** Host memory backing guest RAM, or null (unknown); absent: unknown. */
  backedBytes?(): number | null;
  /** Page size backing guest RAM at a host address (0: not guest RAM); absent: 4 KiB everywhere. */
  hostPageBytes?(addr: bigint): number;
  /**
   * Hold vhost-user messages while `gate()` says an element is half done, so a
   * queue stop or memory-table change never lands mid-element.
   */
  setDispatchGate(gate: () => boolean): void;
  /** Messages waited at the gate. */
  readonly messagesWaiting: boolean;
  /** The gate opened: dispatch what waited. */
  resumeDispatch(): void;
  close(reason: string): void;
}
