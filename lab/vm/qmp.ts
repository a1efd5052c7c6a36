// Minimal QMP client: greeting, qmp_capabilities, execute() matched by id,
// events re-emitted. Enough for balloon, query-balloon, qom-set and quit.
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { VmError } from './errors.js';

export interface QmpEvent {
  event: string;
  data?: unknown;
  timestamp?: { seconds: number; microseconds: number };
}

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

export class QmpClient extends EventEmitter {
  private buf = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private closed: string | undefined;
  private greeted: ((ok: boolean) => void) | undefined;

  private constructor(private readonly sock: Socket) {
    super();
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.data(d));
    sock.on('error', (e) => this.close(`QMP socket error: ${e.message}`));
    sock.on('close', () => this.close('QMP connection closed'));
  }

  /**
   * Connects to a QMP unix socket, retrying while it does not exist yet (QEMU
   * creates it at start-up), and leaves command mode negotiated.
   * `alive` stops the retries early, e.g. when the QEMU process has exited.
   */
  static async connect(path: string, timeoutMs = 10_000, alive: () => boolean = () => true): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      try {
        const sock = await new Promise<Socket>((resolve, reject) => {
          const s = connect(path);
          s.once('connect', () => { s.off('error', reject); resolve(s); });
          s.once('error', reject);
        });
        const c = new QmpClient(sock);
        await c.handshake(Math.max(1_000, deadline - Date.now()));
        return c;
      } catch (e) {
        if (e instanceof VmError) throw e;
        last = (e as Error).message;
      }
      if (!alive()) throw new VmError('EBALLOON_VM_EXITED', `QEMU exited before its QMP socket ${path} accepted a connection`);
      if (Date.now() > deadline) throw new VmError('EBALLOON_VM_TIMEOUT', `QMP socket ${path} not ready after ${timeoutMs} ms: ${last}`);
      await sleep(50);
    }
  }

  private async handshake(timeoutMs: number): Promise<void> {
    const ok = await new Promise<boolean>((resolve) => {
      this.greeted = resolve;
      setTimeout(() => resolve(false), timeoutMs).unref();
    });
    this.greeted = undefined;
    if (!ok) {
      this.sock.destroy();
      throw new VmError('EBALLOON_VM_QMP', `no QMP greeting${this.closed ? `: ${this.closed}` : ` within ${timeoutMs} ms`}`);
    }
    await this.execute('qmp_capabilities');
  }

  private data(d: string): void {
    this.buf += d;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line) this.message(line);
    }
  }

  private message(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.emit('protocol-error', line);
      return;
    }
    if ('QMP' in msg) {
      this.greeted?.(true);
      return;
    }
    if (typeof msg.event === 'string') {
      this.emit('event', msg as unknown as QmpEvent);
      return;
    }
    const id = typeof msg.id === 'string' ? msg.id : undefined;
    const p = id !== undefined ? this.pending.get(id) : undefined;
    if (!p || id === undefined) return;
    this.pending.delete(id);
    if ('return' in msg) {
      p.resolve(msg.return);
    } else {
      const err = (msg.error ?? {}) as { class?: string; desc?: string };
      p.reject(new VmError('EBALLOON_VM_QMP', `QMP ${p.command}: ${err.class ?? 'Error'}: ${err.desc ?? line}`));
    }
  }

  /** Runs one command; resolves with its `return` value, rejects with the QMP error. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closed) return Promise.reject(new VmError('EBALLOON_VM_QMP', `QMP ${command}: ${this.closed}`));
    const id = `vub-${this.nextId++}`;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject });
      this.sock.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  /** Sets the balloon target: guest RAM minus the balloon, in bytes. */
  balloon(valueBytes: number): Promise<void> {
    return this.execute<Record<string, never>>('balloon', { value: valueBytes }).then(() => undefined);
  }

  /** Guest RAM minus the balloon's actual size, in bytes. */
  async queryBalloon(): Promise<number> {
    const r = await this.execute<{ actual: number }>('query-balloon');
    return r.actual;
  }

  /** Asks QEMU to exit. Resolves once QEMU acknowledged or dropped the connection. */
  async quit(): Promise<void> {
    try {
      await this.execute('quit');
    } catch (e) {
      // QEMU may close the socket before its reply gets out; that is success.
      if (!this.closed) throw e;
    }
  }

  get isClosed(): boolean {
    return this.closed !== undefined;
  }

  close(reason = 'QMP client closed'): void {
    if (this.closed) return;
    this.closed = reason;
    this.greeted?.(false);
    this.sock.destroy();
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(new VmError('EBALLOON_VM_QMP', `QMP ${p.command}: ${reason}`));
    }
    this.emit('close', reason);
  }
}
