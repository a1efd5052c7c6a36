// The control socket: mode 0600, each peer checked with SO_PEERCRED (root or
// the daemon's own user), newline-delimited JSON requests (protocol.ts).
import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, Server, Socket } from 'node:net';
import { dirname } from 'node:path';
import { BalloonError } from '../errors.js';
import { socketDirHint } from '../host/privileges.js';
import type { Logger } from '../log.js';
import { peerAllowed, peerCred, PeerCred } from './peercred.js';
import { Envelope, errorLine, eventLine, MAX_REQUEST_BYTES, okLine, parseRequest, Request } from './protocol.js';

export interface ControlHandler {
  handle(req: Exclude<Request, { op: 'watch' }>, peer: PeerCred): unknown | Promise<unknown>;
  /** Subscribe to events for `watch` (of one VM when it names one); returns the unsubscribe function. */
  subscribe(req: Extract<Request, { op: 'watch' }>, listener: (event: unknown) => void): () => void;
}

export class ControlServer {
  private readonly server: Server;
  private readonly clients = new Set<Socket>();

  private constructor(readonly path: string, private readonly handler: ControlHandler, private readonly log: Logger) {
    this.server = createServer((s) => this.onConnection(s));
  }

  static async listen(path: string, handler: ControlHandler, log: Logger): Promise<ControlServer> {
    if (existsSync(path) && lstatSync(path).isSocket() && !(await isLive(path))) unlinkSync(path);
    const cs = new ControlServer(path, handler, log);
    const oldMask = process.umask(0o177); // the socket is born 0600
    try {
      await new Promise<void>((resolve, reject) => {
        cs.server.once('error', reject);
        cs.server.listen(path, () => resolve());
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new BalloonError('EBALLOON_SOCKET', `cannot listen on control socket ${path}: ${code ?? err}`,
        code === 'EADDRINUSE' ? 'another daemon uses this control socket; stop it or pass another --control-socket' : socketDirHint(dirname(path)));
    } finally {
      process.umask(oldMask);
    }
    chmodSync(path, 0o600);
    return cs;
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    try {
      unlinkSync(this.path);
    } catch {
      // gone already
    }
  }

  private onConnection(s: Socket): void {
    let cred: PeerCred | null = null;
    try {
      cred = peerCred(s);
    } catch (err) {
      this.log.warn({ err }, 'control: cannot read peer credentials');
    }
    if (!peerAllowed(cred)) {
      this.log.warn({ peer: cred }, 'control: refused a caller that is neither root nor the daemon user');
      s.end(errorLine(null, new BalloonError('EBALLOON_PERMISSION', 'permission denied: only root or the daemon user may use the control socket', 'run balloonctl as root (sudo)')));
      return;
    }
    this.clients.add(s);
    s.on('close', () => this.clients.delete(s));
    s.on('error', () => s.destroy());
    let buffered = '';
    let unsubscribe: (() => void) | null = null;
    s.on('close', () => unsubscribe?.());
    s.setEncoding('utf8');
    s.on('data', (chunk: string) => {
      buffered += chunk;
      if (buffered.length > MAX_REQUEST_BYTES && !buffered.includes('\n')) {
        s.end(errorLine(null, new BalloonError('EBALLOON_CONFIG', `request longer than ${MAX_REQUEST_BYTES} bytes`)));
        buffered = '';
        return;
      }
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line.length === 0) continue;
        if (line.length > MAX_REQUEST_BYTES) {
          s.end(errorLine(null, new BalloonError('EBALLOON_CONFIG', `request longer than ${MAX_REQUEST_BYTES} bytes`)));
          return;
        }
        let env: Envelope;
        try {
          env = parseRequest(line);
        } catch (err) {
          s.write(errorLine(null, err));
          continue;
        }
        if (env.req.op === 'watch') {
          try {
            unsubscribe ??= this.handler.subscribe(env.req, (ev) => { if (!s.destroyed) s.write(eventLine(ev)); });
            s.write(okLine(env.id, { watching: true }));
          } catch (err) {
            s.write(errorLine(env.id, err));
          }
          continue;
        }
        const { id, req } = env;
        const fail = (err: unknown) => {
          if (!(err instanceof BalloonError)) this.log.error({ err, op: req.op }, 'control request failed');
          if (!s.destroyed) s.write(errorLine(id, err));
        };
        try {
          const result = this.handler.handle(req, cred!);
          if (result instanceof Promise) result.then((v) => { if (!s.destroyed) s.write(okLine(id, v)); }, fail);
          else s.write(okLine(id, result));
        } catch (err) {
          fail(err);
        }
      }
    });
  }
}

function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}
