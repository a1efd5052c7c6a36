// The frontend's half of the vhost-user device state transfer, as our QEMU
// patch does it (qemu/patches/0003: vhost_save_backend_state(),
// vhost_load_backend_state()): SET_DEVICE_STATE_FD {u32 direction, u32
// phase} with one end of a pipe, a u64 reply (bits 0-7 the error, bit 8
// "no fd: use yours"), the state through the pipe until its end of file,
// then CHECK_DEVICE_STATE, whose u64 reply is 0 when the backend took it.
import { closeSync, readSync, writeSync } from 'node:fs';
import { Frontend, VHOST_USER_VRING_NOFD_MASK } from './frontend.js';
import { pipe } from './sys.js';

export const SET_DEVICE_STATE_FD = 42;
export const CHECK_DEVICE_STATE = 43;
export const VHOST_USER_PROTOCOL_F_DEVICE_STATE = 19;
export const SAVE = 0;
export const LOAD = 1;

/** SET_DEVICE_STATE_FD: the reply's u64. The fd is ours to close (the backend got its own copy). */
export function setDeviceStateFd(fe: Frontend, direction: number, phase: number, fd: number): bigint {
  const p = Buffer.alloc(8);
  p.writeUInt32LE(direction, 0);
  p.writeUInt32LE(phase, 4);
  const r = fe.call(SET_DEVICE_STATE_FD, p, [fd]);
  return r.payload.readBigUInt64LE(0);
}

export function checkDeviceState(fe: Frontend): bigint {
  return fe.getU64(CHECK_DEVICE_STATE);
}

/** The backend's state, and its verdict (0: whole). */
export function saveState(fe: Frontend): { state: Buffer; check: bigint } {
  const [rd, wr] = pipe();
  try {
    const reply = setDeviceStateFd(fe, SAVE, 0, wr);
    closeSync(wr);
    if ((reply & 0xffn) !== 0n || !(reply & VHOST_USER_VRING_NOFD_MASK)) throw new Error(`SET_DEVICE_STATE_FD (save) answered 0x${reply.toString(16)}`);
    const chunks: Buffer[] = [];
    const b = Buffer.alloc(64 << 10);
    for (let n; (n = readSync(rd, b)) > 0;) chunks.push(Buffer.from(b.subarray(0, n)));
    return { state: Buffer.concat(chunks), check: checkDeviceState(fe) };
  } finally {
    closeSync(rd);
  }
}

/** Hand the backend a state; its verdict (0: taken). */
export function loadState(fe: Frontend, state: Buffer): bigint {
  const [rd, wr] = pipe();
  let wrOpen = true;
  try {
    const reply = setDeviceStateFd(fe, LOAD, 0, rd);
    closeSync(rd);
    if ((reply & 0xffn) !== 0n) throw new Error(`SET_DEVICE_STATE_FD (load) answered 0x${reply.toString(16)}`);
    try {
      for (let off = 0; off < state.length;) off += writeSync(wr, state, off);
    } catch (err) {
      // EPIPE: the backend stopped reading (too large); the check says so.
      if ((err as NodeJS.ErrnoException).code !== 'EPIPE') throw err;
    }
    closeSync(wr);
    wrOpen = false;
    return checkDeviceState(fe);
  } finally {
    if (wrOpen) closeSync(wr);
  }
}
