// The frontend (QEMU's) side of vhost-user: message framing, fd passing and
// the requests a virtio device setup needs (docs/interop/vhost-user.rst).

import { check, close, libc } from '../../src/transport/libc.js';
import { native } from '../../src/transport/native.js';

export const VHOST_USER = {
  GET_FEATURES: 1, SET_FEATURES: 2, SET_OWNER: 3, SET_MEM_TABLE: 5, SET_VRING_NUM: 8, SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10, GET_VRING_BASE: 11, SET_VRING_KICK: 12, SET_VRING_CALL: 13, GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16, SET_VRING_ENABLE: 18, SET_SLAVE_REQ_FD: 21, GET_CONFIG: 24, SET_CONFIG: 25,
} as const;
export const VHOST_USER_SLAVE_CONFIG_CHANGE_MSG = 2;
export const VHOST_USER_F_PROTOCOL_FEATURES = 30;
const FLAG_VERSION = 0x1;
const FLAG_REPLY = 0x4;
const FLAG_NEED_REPLY = 0x8;
const HDR = 12;

const lib = libc();
const setsockopt = lib.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)');
const socketpair = lib.func('int socketpair(int domain, int type, int protocol, _Out_ int *sv)');
const pollFn = lib.func('int poll(_Inout_ void *fds, unsigned long nfds, int timeout)');
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;

export interface Message {
  request: number;
  flags: number;
  payload: Buffer;
  fds: number[];
}

export class Frontend {
  private readonly shim = native();
  private readonly rx = Buffer.alloc(4096);
  private readonly fdsBuf = Buffer.alloc(4 * 8);
  private readonly nfds = [0];
  closed = false;

  private constructor(readonly sock: number) {}

  static connect(path: string, timeoutMs = 5000): Frontend {
    const fd = Number(native().vub_connect_unix(path));
    if (fd < 0) throw new Error(`connect ${path}: errno ${-fd}`);
    const tv = Buffer.alloc(16);
    tv.writeBigInt64LE(BigInt(Math.floor(timeoutMs / 1000)), 0);
    tv.writeBigInt64LE(BigInt((timeoutMs % 1000) * 1000), 8);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16);
    return new Frontend(fd);
  }

  /** Send a request; with needReply the caller must recv() the answer. */
  send(request: number, payload: Buffer = Buffer.alloc(0), fds: number[] = [], needReply = false): void {
    const msg = Buffer.alloc(HDR + payload.length);
    msg.writeUInt32LE(request, 0);
    msg.writeUInt32LE(FLAG_VERSION | (needReply ? FLAG_NEED_REPLY : 0), 4);
    msg.writeUInt32LE(payload.length, 8);
    payload.copy(msg, HDR);
    const n = Number(this.shim.vub_send_fds(this.sock, msg, msg.length, fds.length ? Int32Array.from(fds) : null, fds.length));
    if (n !== msg.length) throw new Error(`vhost-user send of request ${request} failed: ${n}`);
  }

  /** Receive one message (blocking, bounded by SO_RCVTIMEO). */
  recv(): Message {
    return readMessage(this.sock, this.rx, this.fdsBuf, this.nfds);
  }

  call(request: number, payload?: Buffer, fds?: number[]): Message {
    this.send(request, payload, fds);
    const m = this.recv();
    if (m.request !== request || !(m.flags & FLAG_REPLY)) throw new Error(`unexpected reply ${m.request} to ${request}`);
    return m;
  }

  getU64(request: number): bigint {
    return this.call(request).payload.readBigUInt64LE(0);
  }

  setU64(request: number, value: bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(value);
    this.send(request, b);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.sock);
  }
}

function readMessage(sock: number, rx: Buffer, fdsBuf: Buffer, nfds: number[]): Message {
  const shim = native();
  const n = Number(shim.vub_recv_fds(sock, rx, HDR, fdsBuf, 8, nfds));
  if (n !== HDR) throw new Error(n === 0 ? 'vhost-user peer closed the connection' : `vhost-user recv header: ${n}`);
  const fds = Array.from({ length: nfds[0]! }, (_, i) => fdsBuf.readInt32LE(4 * i));
  const size = rx.readUInt32LE(8);
  const payload = Buffer.alloc(size);
  let got = 0;
  while (got < size) {
    const m = Number(shim.vub_recv_fds(sock, payload.subarray(got), size - got, fdsBuf, 8, nfds));
    if (m <= 0) throw new Error(`vhost-user recv payload: ${m}`);
    got += m;
  }
  return { request: rx.readUInt32LE(0), flags: rx.readUInt32LE(4), payload, fds };
}

/** The backend channel (SET_SLAVE_REQ_FD): requests from the device to us. */
export class BackendChannel {
  private readonly rx = Buffer.alloc(64);
  private readonly fdsBuf = Buffer.alloc(32);
  private readonly nfds = [0];

  constructor(readonly ourEnd: number) {}

  static pair(): { channel: BackendChannel; theirEnd: number } {
    const sv = [0, 0];
    check('socketpair', socketpair(1 /* AF_UNIX */, 1 /* SOCK_STREAM */ | 0o2000000, 0, sv));
    return { channel: new BackendChannel(sv[0]!), theirEnd: sv[1]! };
  }

  /** Wait up to timeoutMs for a message; null on timeout. Answers NEED_REPLY. */
  async next(timeoutMs: number): Promise<Message | null> {
    const pfd = Buffer.alloc(8);
    pfd.writeInt32LE(this.ourEnd, 0);
    pfd.writeInt16LE(1 /* POLLIN */, 4);
    const ready = await new Promise<number>((resolve, reject) => {
      pollFn.async(pfd, 1, timeoutMs, (err: unknown, r: number) => (err ? reject(err) : resolve(r)));
    });
    if (ready <= 0) return null;
    const m = readMessage(this.ourEnd, this.rx, this.fdsBuf, this.nfds);
    if (m.flags & FLAG_NEED_REPLY) {
      const reply = Buffer.alloc(HDR + 8);
      reply.writeUInt32LE(m.request, 0);
      reply.writeUInt32LE(FLAG_VERSION | FLAG_REPLY, 4);
      reply.writeUInt32LE(8, 8);
      native().vub_send_fds(this.ourEnd, reply, reply.length, null, 0);
    }
    return m;
  }

  close(): void {
    close(this.ourEnd);
  }
}

