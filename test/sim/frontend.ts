// The frontend (QEMU's) side of vhost-user: message framing, fd passing and
// replies (docs/interop/vhost-user.rst). A message is a 12-byte header
// {u32 request; u32 flags; u32 size} then `size` bytes of payload; fds ride
// along as SCM_RIGHTS. Flags: version 1, REPLY 0x4, NEED_REPLY 0x8.
import { native } from '../../src/transport/native.js';
import { close, setRecvTimeout, socketpair, waitReadable } from './sys.js';

export const VHOST_USER = {
  GET_FEATURES: 1, SET_FEATURES: 2, SET_OWNER: 3, RESET_OWNER: 4, SET_MEM_TABLE: 5, SET_LOG_BASE: 6, SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9, SET_VRING_BASE: 10, GET_VRING_BASE: 11, SET_VRING_KICK: 12, SET_VRING_CALL: 13,
  GET_PROTOCOL_FEATURES: 15, SET_PROTOCOL_FEATURES: 16, GET_QUEUE_NUM: 17, SET_VRING_ENABLE: 18,
  SET_SLAVE_REQ_FD: 21, GET_CONFIG: 24, SET_CONFIG: 25, GET_MAX_MEM_SLOTS: 36, ADD_MEM_REG: 37, REM_MEM_REG: 38,
} as const;
export const VHOST_USER_SLAVE_CONFIG_CHANGE_MSG = 2;
export const VHOST_USER_F_PROTOCOL_FEATURES = 30;
export const VHOST_USER_PROTOCOL_F = {
  MQ: 0, LOG_SHMFD: 1, REPLY_ACK: 3, SLAVE_REQ: 5, CONFIG: 9, SLAVE_SEND_FD: 10, HOST_NOTIFIER: 11,
  INFLIGHT_SHMFD: 12, CONFIGURE_MEM_SLOTS: 15, STATUS: 16,
} as const;
/** VHOST_USER_PROTOCOL_FEATURE_MASK of QEMU 7.2 (features 0-16). */
export const QEMU_7_2_PROTOCOL_MASK = (1n << 17n) - 1n;
export const VHOST_USER_VRING_NOFD_MASK = 1n << 8n;
export const FLAG_VERSION = 0x1;
export const FLAG_REPLY = 0x4;
export const FLAG_NEED_REPLY = 0x8;
export const HDR = 12;

export interface Message {
  request: number;
  flags: number;
  payload: Buffer;
  fds: number[];
}

export class VhostUserError extends Error {
  override name = 'VhostUserError';
}

export class Frontend {
  private readonly shim = native();
  private readonly rx = Buffer.alloc(HDR);
  private readonly fdsBuf = Buffer.alloc(4 * 8);
  private readonly nfds = [0];
  /** Set once REPLY_ACK is negotiated: QEMU then asks for acks on some requests. */
  replyAck = false;
  /** Requests sent, in order (for tests that check the sequence). */
  readonly sent: number[] = [];
  closed = false;

  private constructor(readonly sock: number) {}

  static connect(path: string, timeoutMs = 5000): Frontend {
    const fd = Number(native().vub_connect_unix(path));
    if (fd < 0) throw new VhostUserError(`connect ${path}: errno ${-fd}`);
    setRecvTimeout(fd, timeoutMs);
    return new Frontend(fd);
  }

  /** Send a request; with needReply the caller must recv() the answer. */
  send(request: number, payload: Buffer = Buffer.alloc(0), fds: number[] = [], needReply = false): void {
    const msg = Buffer.alloc(HDR + payload.length);
    msg.writeUInt32LE(request, 0);
    msg.writeUInt32LE(FLAG_VERSION | (needReply ? FLAG_NEED_REPLY : 0), 4);
    msg.writeUInt32LE(payload.length, 8);
    payload.copy(msg, HDR);
    if (this.sent.length < 100_000) this.sent.push(request);
    const n = Number(this.shim.vub_send_fds(this.sock, msg, msg.length, fds.length ? Int32Array.from(fds) : null, fds.length));
    if (n !== msg.length) throw new VhostUserError(`vhost-user send of request ${request} failed: ${n}`);
  }

  /** Receive one message (blocking, bounded by SO_RCVTIMEO). */
  recv(): Message {
    return readMessage(this.sock, this.rx, this.fdsBuf, this.nfds);
  }

  /** A request with a reply (GET_*): returns the reply, checked for request and REPLY flag. */
  call(request: number, payload?: Buffer, fds?: number[]): Message {
    this.send(request, payload, fds);
    return this.expectReply(request);
  }

  /**
   * A request QEMU 7.2 sends with NEED_REPLY when REPLY_ACK is negotiated
   * (SET_MEM_TABLE, ADD/REM_MEM_REG, SET_SLAVE_REQ_FD, SET_CONFIG): wait for
   * the ack and check it is 0 (process_message_reply()).
   */
  acked(request: number, payload?: Buffer, fds?: number[]): void {
    this.send(request, payload, fds, this.replyAck);
    if (!this.replyAck) return;
    const r = this.expectReply(request);
    const status = r.payload.length >= 8 ? r.payload.readBigUInt64LE(0) : -1n;
    if (status !== 0n) throw new VhostUserError(`backend refused request ${request} (status ${status})`);
  }

  getU64(request: number): bigint {
    const r = this.call(request);
    if (r.payload.length !== 8) throw new VhostUserError(`reply to ${request}: ${r.payload.length} bytes, want 8`);
    return r.payload.readBigUInt64LE(0);
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

  private expectReply(request: number): Message {
    const m = this.recv();
    if (m.request !== request || !(m.flags & FLAG_REPLY)) {
      throw new VhostUserError(`unexpected message ${m.request} (flags 0x${m.flags.toString(16)}) in reply to ${request}`);
    }
    return m;
  }
}

function readMessage(sock: number, rx: Buffer, fdsBuf: Buffer, nfds: number[]): Message {
  const shim = native();
  const n = Number(shim.vub_recv_fds(sock, rx, HDR, fdsBuf, 8, nfds));
  if (n !== HDR) throw new VhostUserError(n === 0 ? 'vhost-user peer closed the connection' : `vhost-user recv header: ${n}`);
  const fds = Array.from({ length: nfds[0]! }, (_, i) => fdsBuf.readInt32LE(4 * i));
  const size = rx.readUInt32LE(8);
  if (size > 4096) throw new VhostUserError(`vhost-user message of ${size} bytes`);
  const payload = Buffer.alloc(size);
  let got = 0;
  while (got < size) {
    const m = Number(shim.vub_recv_fds(sock, payload.subarray(got), size - got, fdsBuf, 8, nfds));
    if (m <= 0) throw new VhostUserError(`vhost-user recv payload: ${m}`);
    got += m;
  }
  return { request: rx.readUInt32LE(0), flags: rx.readUInt32LE(4), payload, fds };
}

/** The backend channel (SET_SLAVE_REQ_FD): requests from the device to us. */
export class BackendChannel {
  private readonly rx = Buffer.alloc(HDR);
  private readonly fdsBuf = Buffer.alloc(32);
  private readonly nfds = [0];
  /** Every request received, in order. */
  readonly received: number[] = [];
  closed = false;
  /** The device side hung up (daemon gone or dropped us). */
  peerClosed = false;
  private waiting: { cancel: () => void } | undefined;

  constructor(readonly ourEnd: number) {}

  static pair(): { channel: BackendChannel; theirEnd: number } {
    const [ours, theirs] = socketpair();
    return { channel: new BackendChannel(ours), theirEnd: theirs };
  }

  /** Wait up to timeoutMs for a message; null on timeout. Answers NEED_REPLY like QEMU's slave_read(). */
  async next(timeoutMs: number): Promise<Message | null> {
    if (this.closed) return null;
    if (this.peerClosed) {
      // Nothing will come: wait out the timeout so polling loops do not spin.
      await new Promise((r) => setTimeout(r, timeoutMs));
      return null;
    }
    const w = waitReadable(this.ourEnd, timeoutMs);
    this.waiting = w;
    const ready = await w.done;
    this.waiting = undefined;
    if (!ready || this.closed) return null;
    let m: Message;
    try {
      m = readMessage(this.ourEnd, this.rx, this.fdsBuf, this.nfds);
    } catch {
      this.peerClosed = true;
      return null;
    }
    for (const fd of m.fds) close(fd);
    this.received.push(m.request);
    if (m.flags & FLAG_NEED_REPLY) {
      const reply = Buffer.alloc(HDR + 8);
      reply.writeUInt32LE(m.request, 0);
      reply.writeUInt32LE(FLAG_VERSION | FLAG_REPLY, 4);
      reply.writeUInt32LE(8, 8);
      // u64 0: handled (QEMU answers !!ret).
      native().vub_send_fds(this.ourEnd, reply, reply.length, null, 0);
    }
    return m;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.waiting?.cancel();
    close(this.ourEnd);
  }
}
