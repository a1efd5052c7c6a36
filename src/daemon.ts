// The daemon: one event loop, one vhost-user socket, one balloon device.
import { BalloonDevice, BalloonDeviceOptions } from './device/balloon.js';
import type { Logger } from './log.js';
import { VhostUserConnection } from './transport/connection.js';
import { EpollLoop } from './transport/event-loop.js';
import { UnixListener } from './transport/listener.js';
import { close } from './transport/libc.js';

export interface DaemonOptions {
  /** Listen here for the frontend (QEMU) ... */
  socketPath?: string;
  /** ... or use this already-connected socket (libvirt / systemd style). */
  fd?: number;
  device: Omit<BalloonDeviceOptions, 'log'>;
  log: Logger;
}

export class Daemon {
  readonly loop = new EpollLoop();
  readonly device: BalloonDevice;
  private listener: UnixListener | null = null;
  private stopped = false;
  private resolveDone!: (code: number) => void;
  /** Resolves with the exit code when the daemon stops. */
  readonly done = new Promise<number>((r) => { this.resolveDone = r; });

  constructor(private readonly opts: DaemonOptions) {
    this.device = new BalloonDevice({ ...opts.device, log: opts.log });
    this.loop.onHandlerError = (err, fd) => {
      opts.log.error({ err, fd }, 'event handler failed');
    };
  }

  start(): void {
    const { log } = this.opts;
    if (this.opts.fd !== undefined) {
      this.attach(this.opts.fd);
      // With a passed-in socket there is nothing to accept after it closes.
      this.device.once('disconnected', () => this.stop(0));
      log.info({ fd: this.opts.fd }, 'serving the vhost-user socket passed as --fd');
      return;
    }
    if (!this.opts.socketPath) throw new Error('either socketPath or fd is required');
    this.listener = UnixListener.listen(this.loop, this.opts.socketPath);
    this.listener.start((fd) => this.attach(fd));
    log.info({ socket: this.opts.socketPath }, 'waiting for the frontend (QEMU) on the vhost-user socket');
  }

  private attach(fd: number): void {
    if (this.device.connected) {
      this.device.badInput.record('second_frontend', { fd });
      this.device.counters.badInput.second_frontend = (this.device.counters.badInput.second_frontend ?? 0) + 1;
      close(fd);
      return;
    }
    try {
      const conn = new VhostUserConnection(this.loop, fd, this.device.connectionOptions());
      this.device.attach(conn);
      this.opts.log.info({ fd }, 'frontend connected');
    } catch (err) {
      this.opts.log.error({ err }, 'could not set up the vhost-user connection');
      close(fd);
    }
  }

  stop(code = 0): void {
    if (this.stopped) return;
    this.stopped = true;
    this.device.detach('daemon stopping');
    this.listener?.close();
    this.loop.close();
    this.opts.log.info('stopped');
    this.resolveDone(code);
  }
}
