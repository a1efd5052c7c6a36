// Client side of the control protocol (balloonctl, the libvirt hook, tests).
import { createConnection, Socket } from 'node:net';
import { BalloonError, BalloonErrorCode } from '../errors.js';
import { PROTOCOL_VERSION, Request } from './protocol.js';

/** The connection failed under a request (no answer in time, or closed): not an answer of the daemon. */
export class ControlConnectionError extends BalloonError {
  constructor(message: string) {
    super('EBALLOON_SOCKET', message);
  }
}

export class ControlClient {
  private nextId = 1;
  private buffered = '';
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private eventListener: ((ev: unknown) => void) | null = null;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('close', () => {
      for (const p of this.pending.values()) p.reject(new ControlConnectionError('the daemon closed the control connection'));
      this.pending.clear();
    });
  }

  static connect(path: string, timeoutMs = 5000): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const s = createConnection(path);
      const timer = setTimeout(() => { s.destroy(); reject(new BalloonError('EBALLOON_SOCKET', `no answer from ${path} within ${timeoutMs} ms`)); }, timeoutMs);
      s.once('connect', () => { clearTimeout(timer); resolve(new ControlClient(s)); });
      s.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(connectError(path, err));
      });
    });
  }

  request<T = unknown>(req: Request, timeoutMs = 10_000): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ControlConnectionError(`the daemon did not answer "${req.op}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v as T); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.socket.write(`${JSON.stringify({ v: PROTOCOL_VERSION, id, ...req })}\n`);
    });
  }

  /** Start streaming events to `listener` (until close()). */
  async watch(listener: (ev: unknown) => void, vm?: string): Promise<void> {
    this.eventListener = listener;
    await this.request(vm ? { op: 'watch', vm } : { op: 'watch' });
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      let msg: { id?: number | null; ok?: boolean; result?: unknown; error?: { code: BalloonErrorCode; message: string; hint?: string }; event?: unknown };
      try {
        msg = JSON.parse(line);
      } catch {
        continue;
      }
      if (msg.event !== undefined) {
        this.eventListener?.(msg.event);
        continue;
      }
      const waiter = typeof msg.id === 'number' ? this.pending.get(msg.id) : undefined;
      if (!waiter) {
        // An error without an id (refused connection, unparsable request).
        if (msg.ok === false && msg.error) {
          const err = new BalloonError(msg.error.code, msg.error.message, msg.error.hint);
          for (const p of this.pending.values()) p.reject(err);
          this.pending.clear();
        }
        continue;
      }
      this.pending.delete(msg.id as number);
      if (msg.ok) waiter.resolve(msg.result);
      else waiter.reject(new BalloonError(msg.error?.code ?? 'EBALLOON_INTERNAL', msg.error?.message ?? 'request failed', msg.error?.hint));
    }
  }
}

function connectError(path: string, err: NodeJS.ErrnoException): BalloonError {
  switch (err.code) {
    case 'ENOENT':
    case 'ECONNREFUSED':
      return new BalloonError('EBALLOON_NOT_CONNECTED', `no daemon at ${path}`, 'is vhost-user-balloon running for this VM? (balloonctl list shows the running ones)');
    case 'EACCES':
      return new BalloonError('EBALLOON_PERMISSION', `permission denied on ${path}`, 'run balloonctl as root (sudo)');
    default:
      return new BalloonError('EBALLOON_SOCKET', `cannot connect to ${path}: ${err.code ?? err.message}`);
  }
}
