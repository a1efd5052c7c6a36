// The libc calls the simulated guest needs beyond src/transport/libc.ts:
// guest RAM (memfd, mmap), its residency (lseek SEEK_DATA/SEEK_HOLE, which
// shmem implements) and the sockets of the backend channel. Output buffers
// are `void *` + Buffer: koffi `_Out_` struct pointers are not used here.
import koffi from 'koffi';
import { SysError, check, close, errno, libc } from '../../src/transport/libc.js';

const lib = libc();

export const memfd_create = lib.func('int memfd_create(const char *name, unsigned int flags)');
export const ftruncate = lib.func('int ftruncate(int fd, int64_t length)');
export const mmap = lib.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)');
export const munmap = lib.func('int munmap(void *addr, size_t length)');
export const lseek = lib.func('int64_t lseek(int fd, int64_t offset, int whence)');
const socketpairRaw = lib.func('int socketpair(int domain, int type, int protocol, void *sv)');
const setsockoptRaw = lib.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)');
export const poll = lib.func('int poll(void *fds, unsigned long nfds, int timeout)');
const fcntlRaw = lib.func('int fcntl(int fd, int cmd, int arg)');
const pipe2Raw = lib.func('int pipe2(void *fds, int flags)');
const O_CLOEXEC = 0o2000000;

/** F_SETPIPE_SZ: the pipe fills after `bytes` (rounded up to a page). */
export function setPipeSize(fd: number, bytes: number): void {
  check('fcntl(F_SETPIPE_SZ)', fcntlRaw(fd, 1031, bytes));
}

/** A pipe: [read end, write end] (close-on-exec). */
export function pipe(): [number, number] {
  const b = Buffer.alloc(8);
  check('pipe2', pipe2Raw(b, O_CLOEXEC));
  return [b.readInt32LE(0), b.readInt32LE(4)];
}
const F_GETFL = 3;

/** The file status flags of fd (O_NONBLOCK is 0o4000). */
export function fcntlFlags(fd: number): number {
  return check('fcntl(F_GETFL)', fcntlRaw(fd, F_GETFL, 0));
}

export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;
export const MFD_CLOEXEC = 1;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;
export const ENXIO = 6;
export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_RCVTIMEO = 20;
export const POLLIN = 1;

export { SysError, check, close, errno };

/** A shared, mapped memfd: what QEMU's memory-backend-memfd,share=on gives. */
/** MFD_HUGETLB, and the huge page size as log2 << MFD_HUGE_SHIFT (26). */
const MFD_HUGETLB = 4;
const mfdHuge = (bytes: number): number => (MFD_HUGETLB | (Math.log2(bytes) << 26)) >>> 0;

/** A shared memfd mapping; with `hugePageBytes` on hugetlbfs (the host must have that many huge pages free). */
export function mapMemfd(name: string, size: number, hugePageBytes = 0): { fd: number; addr: bigint } {
  const fd = check('memfd_create', memfd_create(name, (MFD_CLOEXEC | (hugePageBytes ? mfdHuge(hugePageBytes) : 0)) >>> 0));
  try {
    check('ftruncate', ftruncate(fd, size));
    const p = mmap(null, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) as bigint | null;
    if (p === null || BigInt(p) === 0xffffffffffffffffn) throw new SysError('mmap', errno());
    return { fd, addr: BigInt(p) };
  } catch (err) {
    close(fd);
    throw err;
  }
}

/** The runs of [off, off+len) of a memfd that hold data (not holes), as [start, end) offsets. */
export function dataRanges(fd: number, off: number, len: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let at = off;
  const end = off + len;
  while (at < end) {
    const data = Number(lseek(fd, at, SEEK_DATA));
    if (data < 0) {
      if (errno() === ENXIO) break; // no data after `at`
      throw new SysError('lseek(SEEK_DATA)', errno());
    }
    if (data >= end) break;
    const hole = Number(lseek(fd, data, SEEK_HOLE));
    if (hole < 0) throw new SysError('lseek(SEEK_HOLE)', errno());
    out.push([data, Math.min(hole, end)]);
    at = hole;
  }
  return out;
}

/** Bytes of [off, off+len) of a memfd that hold data (not holes). */
export function dataBytes(fd: number, off: number, len: number): number {
  return dataRanges(fd, off, len).reduce((n, [s, e]) => n + e - s, 0);
}

export function socketpair(): [number, number] {
  const sv = Buffer.alloc(8);
  check('socketpair', socketpairRaw(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
  return [sv.readInt32LE(0), sv.readInt32LE(4)];
}

/** Bound blocking reads on a socket (SO_RCVTIMEO). */
export function setRecvTimeout(fd: number, ms: number): void {
  const tv = Buffer.alloc(16);
  tv.writeBigInt64LE(BigInt(Math.floor(ms / 1000)), 0);
  tv.writeBigInt64LE(BigInt((ms % 1000) * 1000), 8);
  check('setsockopt(SO_RCVTIMEO)', setsockoptRaw(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16));
}

/** Wait for POLLIN on fd without blocking the event loop (libuv poll); cancel() before closing fd. */
export function waitReadable(fd: number, timeoutMs: number): { done: Promise<boolean>; cancel: () => void } {
  let finish: (ok: boolean) => void = () => {};
  const done = new Promise<boolean>((resolve) => {
    let over = false;
    const h = koffi.node.poll(fd, { readable: true }, () => finish(true));
    const t = setTimeout(() => finish(false), timeoutMs);
    finish = (ok) => {
      if (over) return;
      over = true;
      clearTimeout(t);
      h.close();
      resolve(ok);
    };
  });
  return { done, cancel: () => finish(false) };
}
