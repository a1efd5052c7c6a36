// The libvirt hook's side of the host daemon's control socket. libvirtd
// waits for the hook with the domain's job held, so everything here is
// bounded: one connection (2 s to connect), each request 5 s, at most two
// requests per hook call, no retries. A daemon that is not running is a
// message that says how to start it, not a wait.
import { statSync } from 'node:fs';
import { ControlClient, ControlConnectionError } from '../control/client.js';
import type { Request } from '../control/protocol.js';
import { BalloonError } from '../errors.js';
import { lookupUser, type UserIdentity } from '../host/privileges.js';
import type { VmSummary } from '../service/vm.js';

export const CONNECT_TIMEOUT_MS = 2_000;
export const REQUEST_TIMEOUT_MS = 5_000;

/** How an operator starts the host daemon (the message libvirt shows when it is not running). */
export const START_HINT = 'start it with "systemctl start vhost-user-balloon" (without systemd: "vhost-user-balloon --host" as the '
  + 'vhost-user-balloon user, after "vhost-user-balloon --grant vhost-user-balloon --host" as root), then start the domain again';

/** The host daemon is not there: nothing listens on its control socket. */
export class DaemonNotRunning extends BalloonError {
  constructor(readonly socket: string, why: string) {
    super('EBALLOON_NOT_CONNECTED', `the vhost-user-balloon host daemon is not running (${why} ${socket})`, START_HINT);
  }
}

export class HostDaemonClient {
  private constructor(private readonly client: ControlClient, readonly socket: string) {}

  static async connect(socket: string): Promise<HostDaemonClient> {
    try {
      return new HostDaemonClient(await ControlClient.connect(socket, CONNECT_TIMEOUT_MS), socket);
    } catch (err) {
      const e = err as BalloonError;
      if (e.code === 'EBALLOON_NOT_CONNECTED') {
        let exists = false;
        try {
          exists = statSync(socket).isSocket();
        } catch {
          // no file
        }
        throw new DaemonNotRunning(socket, exists ? 'nothing accepts connections on' : 'no');
      }
      if (e.code === 'EBALLOON_PERMISSION') {
        throw new BalloonError('EBALLOON_PERMISSION', `the host daemon refused the hook on ${socket}`,
          'the hook runs as root, which the daemon always lets in: is something else listening there?');
      }
      throw new BalloonError('EBALLOON_SOCKET', `cannot reach the host daemon at ${socket}: ${e.message.split('\n')[0]}`,
        'systemctl status vhost-user-balloon (journalctl -u vhost-user-balloon) shows what it is doing');
    }
  }

  async request<T>(req: Request): Promise<T> {
    try {
      return await this.client.request<T>(req, REQUEST_TIMEOUT_MS);
    } catch (err) {
      if (err instanceof ControlConnectionError) {
        // No answer in time, or the connection went: the daemon is stuck or died under us.
        throw new BalloonError('EBALLOON_SOCKET', `the host daemon at ${this.socket}: ${err.message}`,
          'systemctl status vhost-user-balloon (journalctl -u vhost-user-balloon) shows what it is doing; restart it if it hangs');
      }
      throw err;
    }
  }

  /** The daemon's entry for `vm`, or null. */
  async find(vm: string): Promise<VmSummary | null> {
    const r = await this.request<{ vms: VmSummary[] }>({ op: 'list' });
    return r.vms.find((v) => v.vm === vm) ?? null;
  }

  close(): void {
    this.client.close();
  }
}

/** The daemon's user, from the owner of its control socket (root: null, nothing to grant). */
export function daemonUser(socket: string): UserIdentity | null {
  const st = statSync(socket);
  if (st.uid === 0) return null;
  return lookupUser(String(st.uid)) ?? { name: String(st.uid), uid: st.uid, gid: st.gid, groups: [st.gid] };
}
