// Guest RAM for the simulated guest: a real memfd, mapped shared in this
// process, exactly what QEMU hands a vhost-user backend. The top of RAM is
// reserved for rings and driver buffers; balloon PFNs come from below it.
import koffi from 'koffi';
import { check, close, libc } from '../../src/transport/libc.js';

const lib = libc();
const memfd_create = lib.func('int memfd_create(const char *name, unsigned int flags)');
const ftruncate = lib.func('int ftruncate(int fd, int64_t length)');
const mmap = lib.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)');
const munmap = lib.func('int munmap(void *addr, size_t length)');
const lseek = lib.func('int64_t lseek(int fd, int64_t offset, int whence)');

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const MFD_CLOEXEC = 1;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const ENXIO = 6;
export const PAGE = 4096;

export class GuestMemory {
  readonly fd: number;
  /** Where this process mapped guest RAM: the frontend's "userspace_addr". */
  readonly hostAddr: bigint;
  readonly bytes: Buffer;
  private bump: number;

  constructor(readonly size: number, readonly reservedBytes = 8 << 20) {
    this.fd = check('memfd_create', memfd_create('vub-sim-guest-ram', MFD_CLOEXEC));
    check('ftruncate', ftruncate(this.fd, size));
    const p = mmap(null, size, PROT_READ | PROT_WRITE, MAP_SHARED, this.fd, 0) as bigint | null;
    if (!p || BigInt(p) === 0xffffffffffffffffn) throw new Error(`mmap of ${size} bytes failed: errno ${koffi.errno()}`);
    this.hostAddr = BigInt(p);
    this.bytes = Buffer.from(koffi.view(p, size));
    this.bump = size - reservedBytes;
  }

  /** First byte above the balloonable RAM (start of the reserved area). */
  get usableEnd(): number {
    return this.size - this.reservedBytes;
  }

  /** Allocate from the reserved area (rings, buffers); never freed. */
  alloc(len: number, align = 64): number {
    const at = Math.ceil(this.bump / align) * align;
    if (at + len > this.size) throw new Error('simulated guest: reserved area exhausted');
    this.bump = at + len;
    return at;
  }

  /** Write to pages so they are backed by host memory. */
  touch(gpa: number, len: number): void {
    for (let off = gpa; off < gpa + len; off += PAGE) this.bytes[off] = 0xa5;
  }

  /** Bytes of [gpa, gpa+len) backed by memory in the memfd (SEEK_DATA/SEEK_HOLE). */
  backedBytes(gpa: number, len: number): number {
    let n = 0;
    let at = gpa;
    const end = gpa + len;
    while (at < end) {
      const data = Number(lseek(this.fd, at, SEEK_DATA));
      if (data < 0) {
        if (koffi.errno() === ENXIO) break;
        throw new Error(`lseek SEEK_DATA: errno ${koffi.errno()}`);
      }
      if (data >= end) break;
      const hole = Math.min(Number(lseek(this.fd, data, SEEK_HOLE)), end);
      n += hole - data;
      at = hole;
    }
    return n;
  }

  close(): void {
    munmap(this.hostAddr, this.size);
    close(this.fd);
  }
}
