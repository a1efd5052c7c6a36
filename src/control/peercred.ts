// SO_PEERCRED of a connected unix socket: who is on the other end.
import type { Socket } from 'node:net';
import koffi from 'koffi';
import { libc } from '../transport/libc.js';

const getsockopt = libc().func('int getsockopt(int fd, int level, int name, _Out_ void *val, _Inout_ uint32_t *len)');
const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

/** The peer's credentials, or null when the socket has no fd (not unix). */
export function peerCred(socket: Socket): PeerCred | null {
  // net.Socket does not expose the fd; its libuv handle does.
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return null;
  const buf = Buffer.alloc(12);
  const len = [12];
  if (Number(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, buf, len)) !== 0) {
    throw new Error(`getsockopt(SO_PEERCRED): errno ${koffi.errno()}`);
  }
  return { pid: buf.readInt32LE(0), uid: buf.readUInt32LE(4), gid: buf.readUInt32LE(8) };
}

/** Root, or the user the daemon runs as. */
export function peerAllowed(cred: PeerCred | null, selfUid = process.getuid?.() ?? 0): boolean {
  return cred !== null && (cred.uid === 0 || cred.uid === selfUid);
}
