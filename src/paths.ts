// Where daemons put their sockets, so balloonctl and the libvirt hook can
// find a VM's daemon by name. VUB_RUN_DIR overrides (tests, unprivileged use).
import { join } from 'node:path';

export function runDir(): string {
  return process.env.VUB_RUN_DIR ?? '/run/vhost-user-balloon';
}

/** The vhost-user socket QEMU connects to for VM `name`. */
export const vhostSocketPath = (name: string): string => join(runDir(), `${name}.sock`);
/** The daemon's control socket for VM `name`. */
export const controlSocketPath = (name: string): string => join(runDir(), `${name}.ctl`);

/** VM names become file names: keep them to a safe alphabet. */
export function validVmName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$/.test(name);
}

/** The system user the daemon runs as (the systemd unit's User=, the hook's spawn). */
export const DAEMON_USER = 'vhost-user-balloon';

/**
 * The libvirt hook's own state (pidfiles, daemon logs): root's, apart from the
 * run directory, which belongs to the daemon's user. A daemon could otherwise
 * rewrite the pidfile that root later signals. VUB_HOOK_STATE_DIR overrides.
 */
export function hookStateDir(): string {
  return process.env.VUB_HOOK_STATE_DIR ?? '/run/vhost-user-balloon-hook';
}
