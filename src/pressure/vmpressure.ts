// cgroup v1 memcg vmpressure (Documentation/admin-guide/cgroup-v1/memory.rst,
// "Memory Pressure"): an eventfd registered through cgroup.event_control with
// "<event_fd> <fd of memory.pressure_level> <level>[,<mode>]". Each event
// bumps the eventfd counter; one read may carry several events.
import { join } from 'node:path';
import { BalloonError } from '../errors.js';
import { EPOLLERR, EPOLLHUP, EPOLLIN, FdWatcher } from '../transport/event-loop.js';
import {
  check, close, EFD_CLOEXEC, EFD_NONBLOCK, errno, eventfd, eventfdRead, O_CLOEXEC, O_RDONLY, O_WRONLY, open, strerror, write,
} from '../transport/libc.js';
import { HostPressureEvent, PressureSource, VmpressureLevel, VmpressureMode } from './types.js';

export class VmpressureSource implements PressureSource {
  private fds: { efd: number; lfd: number; cfd: number } | null = null;

  constructor(
    private readonly loop: FdWatcher,
    readonly memcg: string,
    readonly level: VmpressureLevel = 'low',
    readonly mode?: VmpressureMode,
  ) {}

  get description(): string {
    return `vmpressure ${this.level}${this.mode ? `,${this.mode}` : ''} on ${this.memcg}`;
  }

  start(onEvent: (ev: HostPressureEvent) => void, onError: (err: Error) => void): void {
    const levelPath = join(this.memcg, 'memory.pressure_level');
    const controlPath = join(this.memcg, 'cgroup.event_control');
    const lfd = Number(open(levelPath, O_RDONLY | O_CLOEXEC, 0));
    if (lfd < 0) throw openError(levelPath, errno());
    const cfd = Number(open(controlPath, O_WRONLY | O_CLOEXEC, 0));
    if (cfd < 0) {
      const e = errno();
      close(lfd);
      throw openError(controlPath, e);
    }
    const efd = check('eventfd', eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    const line = Buffer.from(`${efd} ${lfd} ${this.level}${this.mode ? `,${this.mode}` : ''}`);
    if (Number(write(cfd, line, line.length)) !== line.length) {
      const e = errno();
      close(efd); close(lfd); close(cfd);
      throw new BalloonError('EBALLOON_PRESSURE', `registering vmpressure on ${this.memcg} failed: ${strerror(e)}`,
        'check the level (low|medium|critical) and mode (default|hierarchy|local); the memory controller must be cgroup v1');
    }
    this.fds = { efd, lfd, cfd };
    this.loop.watch(efd, EPOLLIN, (revents) => {
      try {
        const n = eventfdRead(efd);
        if (n > 0n) onEvent({ source: 'vmpressure', level: this.level, count: Number(n), path: this.memcg });
        if (revents & (EPOLLERR | EPOLLHUP)) throw new Error('eventfd error');
      } catch (err) {
        onError(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  stop(): void {
    if (!this.fds) return;
    this.loop.unwatch(this.fds.efd);
    // Closing the eventfd unregisters the listener in the kernel.
    close(this.fds.efd);
    close(this.fds.lfd);
    close(this.fds.cfd);
    this.fds = null;
  }
}

export function openError(path: string, err: number): BalloonError {
  const hint = err === 2
    ? 'the memcg does not exist: check --memcg (for libvirt VMs, e.g. the machine.slice memcg) or create it'
    : err === 13 || err === 1
      ? 'permission denied: run the daemon as root or give it write access to the memcg'
      : 'check --memcg and that the memory controller is mounted';
  return new BalloonError('EBALLOON_PRESSURE', `cannot open ${path}: ${strerror(err)}`, hint);
}
