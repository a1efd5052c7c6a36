// libc through koffi: the system calls the daemon makes directly. Other
// modules declare their own functions on the same handle with `libc()`.
import koffi, { type LibraryHandle } from 'koffi';

let handle: LibraryHandle | undefined;

/** The loaded C library (loaded once). */
export function libc(): LibraryHandle {
  if (!handle) {
    // koffi knows size_t but not its signed twin.
    koffi.alias('ssize_t', 'intptr_t');
    handle = koffi.load('libc.so.6');
  }
  return handle;
}

const lib = libc();

export const close = lib.func('int close(int fd)');
export const read = lib.func('ssize_t read(int fd, _Out_ void *buf, size_t count)');
export const write = lib.func('ssize_t write(int fd, const void *buf, size_t count)');
export const eventfd = lib.func('int eventfd(unsigned int initval, int flags)');
export const open = lib.func('int open(const char *path, int flags, int mode)');
export const fcntl = lib.func('int fcntl(int fd, int cmd, int arg)');
export const getpid = lib.func('int getpid()');
export const strerrorRaw = lib.func('const char *strerror(int errnum)');

export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const EAGAIN = 11;
export const EINTR = 4;

/** errno of the last failed call on this thread. */
export function errno(): number {
  return koffi.errno();
}

export function strerror(err: number): string {
  return String(strerrorRaw(err));
}

/** An Error carrying the errno and the call that failed. */
export class SysError extends Error {
  constructor(readonly call: string, readonly errno: number) {
    super(`${call}: ${strerror(errno)} (errno ${errno})`);
    this.name = 'SysError';
  }
}

/** Throw SysError when a call returned a negative value. */
export function check(call: string, ret: number | bigint): number {
  const n = Number(ret);
  if (n < 0) throw new SysError(call, errno());
  return n;
}

/** Read one 8-byte eventfd counter; 0n when nothing was pending (EAGAIN). */
export function eventfdRead(fd: number): bigint {
  const buf = Buffer.alloc(8);
  const n = Number(read(fd, buf, 8));
  if (n === 8) return buf.readBigUInt64LE(0);
  if (n < 0 && errno() === EAGAIN) return 0n;
  throw new SysError('read(eventfd)', n < 0 ? errno() : 5 /* EIO: short read */);
}

export function eventfdWrite(fd: number, value = 1n): void {
  const buf = Buffer.alloc(8);
  buf.writeBigUInt64LE(value, 0);
  check('write(eventfd)', write(fd, buf, 8));
}
