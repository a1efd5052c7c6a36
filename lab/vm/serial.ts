// The guest's serial console as a stream of VUB events: line splitting, a
// history that late waiters can search, and waitFor() with a timeout.
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Readable, Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { VmError } from './errors.js';
import { parseVubLine, type VubEvent } from './vub-lines.js';

export type VubPredicate = (e: VubEvent) => boolean;

interface Waiter {
  pred: VubPredicate;
  resolve: (e: VubEvent) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

const TAIL_LINES = 200;

export class SerialConsole extends EventEmitter {
  /** Every VUB event so far; `seq` is the index. */
  readonly events: VubEvent[] = [];
  private readonly tail: string[] = [];
  private readonly decoder = new StringDecoder('utf8');
  private partial = '';
  private endReason: string | undefined;
  private readonly waiters = new Set<Waiter>();

  constructor(input: Readable, private readonly output?: Writable) {
    super();
    input.on('data', (chunk: Buffer | string) => this.push(typeof chunk === 'string' ? chunk : this.decoder.write(chunk)));
    input.on('end', () => this.end('serial console closed (QEMU exited)'));
    input.on('error', (err) => this.end(`serial console error: ${err.message}`));
  }

  /** Feeds raw console text (exposed for tests of the parser). */
  push(text: string): void {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop() ?? '';
    for (const l of lines) this.line(l.replace(/\r$/, ''));
  }

  private line(l: string): void {
    this.tail.push(l);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
    this.emit('line', l);
    const e = parseVubLine(l, this.events.length, performance.now());
    if (!e) return;
    this.events.push(e);
    this.emit('event', e);
    for (const w of this.waiters) {
      if (w.pred(e)) this.settle(w).resolve(e);
    }
  }

  /** Marks the console finished: pending and future waits fail at once. */
  end(reason: string): void {
    if (this.endReason !== undefined) return;
    if (this.partial) this.line(this.partial);
    this.partial = '';
    this.endReason = reason;
    this.emit('end', reason);
    for (const w of this.waiters) this.settle(w).reject(this.failure(`${reason} while waiting`));
  }

  get ended(): boolean {
    return this.endReason !== undefined;
  }

  /** Index the next event will get: pass it to waitFor to ignore the past. */
  cursor(): number {
    return this.events.length;
  }

  /** Last console lines (VUB or not), for error messages. */
  lastLines(n = 40): string[] {
    return this.tail.slice(-n);
  }

  /** First event at index >= since matching pred; waits up to timeoutMs for one to arrive. */
  waitFor(pred: VubPredicate, timeoutMs: number, since = 0): Promise<VubEvent> {
    for (let i = since; i < this.events.length; i++) {
      const e = this.events[i];
      if (e && pred(e)) return Promise.resolve(e);
    }
    if (this.endReason !== undefined) return Promise.reject(this.failure(`${this.endReason} before the awaited line`));
    return new Promise<VubEvent>((resolve, reject) => {
      const w: Waiter = {
        pred, resolve, reject,
        timer: setTimeout(() => {
          this.settle(w);
          reject(this.failure(`no matching VUB line within ${timeoutMs} ms`, 'EBALLOON_VM_TIMEOUT'));
        }, timeoutMs),
      };
      this.waiters.add(w);
    });
  }

  /** Like waitFor, counting only events that arrive from now on. */
  next(pred: VubPredicate, timeoutMs: number): Promise<VubEvent> {
    return this.waitFor(pred, timeoutMs, this.cursor());
  }

  /** Writes one line to the guest's console (its init reads commands there). */
  send(line: string): void {
    if (!this.output || this.endReason !== undefined) throw this.failure('serial console is not writable');
    if (/[\r\n]/.test(line)) throw new RangeError('one command per line');
    this.output.write(`${line}\n`);
  }

  /** All events from `since` on, then new ones as they come, until the console ends. */
  async *iterate(since = 0): AsyncGenerator<VubEvent> {
    let i = since;
    for (;;) {
      while (i < this.events.length) {
        const e = this.events[i++];
        if (e) yield e;
      }
      if (this.endReason !== undefined) return;
      try {
        await this.waitFor(() => true, 2 ** 31 - 1, i);
      } catch {
        // ended: drain whatever arrived, then stop
      }
    }
  }

  private settle(w: Waiter): Waiter {
    clearTimeout(w.timer);
    this.waiters.delete(w);
    return w;
  }

  private failure(msg: string, code: 'EBALLOON_VM_TIMEOUT' | 'EBALLOON_VM_EXITED' = 'EBALLOON_VM_EXITED'): VmError {
    return new VmError(code, msg, `last console lines:\n  ${this.lastLines(25).join('\n  ')}`);
  }
}
