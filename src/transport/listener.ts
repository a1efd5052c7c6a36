// The vhost-user listening socket. One frontend at a time: a second one is
// refused (closed at once) while the first is attached. A stale socket file
// from a dead daemon is replaced; a live one is an error.
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { BalloonError } from '../errors.js';
import { socketDirHint } from '../host/privileges.js';
import { EPOLLIN, FdWatcher } from './event-loop.js';
import { close, errno, libc, strerror } from './libc.js';
import { native } from './native.js';

const accept4 = libc().func('int accept4(int fd, void *addr, void *addrlen, int flags)');
const SOCK_CLOEXEC = 0o2000000;
const EAGAIN = 11;
const EADDRINUSE = 98;
const ECONNREFUSED = 111;

export class UnixListener {
  private fd: number;

  private constructor(private readonly loop: FdWatcher, readonly path: string, fd: number) {
    this.fd = fd;
  }

  static listen(loop: FdWatcher, path: string): UnixListener {
    const shim = native();
    let fd = Number(shim.vub_listen_unix(path, 4));
    if (fd === -EADDRINUSE && isStaleSocket(path)) {
      unlinkSync(path);
      fd = Number(shim.vub_listen_unix(path, 4));
    }
    if (fd < 0) {
      const hint = fd === -EADDRINUSE
        ? 'another daemon is listening there; stop it or choose another --socket-path'
        : socketDirHint(dirname(path));
      throw new BalloonError('EBALLOON_SOCKET', `cannot listen on ${path}: ${strerror(-fd)}`, hint);
    }
    return new UnixListener(loop, path, fd);
  }

  /** Call onConnection for each accepted frontend socket (blocking fd). */
  start(onConnection: (fd: number) => void): void {
    this.loop.watch(this.fd, EPOLLIN, () => {
      for (;;) {
        const cfd = Number(accept4(this.fd, null, null, SOCK_CLOEXEC));
        if (cfd < 0) {
          if (errno() !== EAGAIN) throw new Error(`accept4: ${strerror(errno())}`);
          return;
        }
        onConnection(cfd);
      }
    });
  }

  close(): void {
    if (this.fd < 0) return;
    this.loop.unwatch(this.fd);
    close(this.fd);
    this.fd = -1;
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

/**
 * A socket file nobody accepts on (its daemon died without cleaning up).
 * Only ECONNREFUSED says so: EACCES (a socket whose owner and group shut
 * this user out) may be another daemon's live socket, not ours to touch.
 */
function isStaleSocket(path: string): boolean {
  if (!existsSync(path) || !lstatSync(path).isSocket()) return false;
  const fd = Number(native().vub_connect_unix(path));
  if (fd >= 0) {
    close(fd);
    return false;
  }
  return fd === -ECONNREFUSED;
}
