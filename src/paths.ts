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

/** The host daemon's control socket (balloonctl's default). */
export const hostControlSocket = (): string => join(runDir(), 'control.sock');

/** Where the host daemon keeps what survives restarts. VUB_STATE_DIR overrides. */
export const stateDir = (): string => process.env.VUB_STATE_DIR ?? '/var/lib/vhost-user-balloon';

/** The host daemon's per-VM config files. VUB_CONFIG_DIR overrides. */
export const configDir = (): string => process.env.VUB_CONFIG_DIR ?? '/etc/vhost-user-balloon/vms';

/** VM names become file names: keep them to a safe alphabet. */
export function validVmName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$/.test(name);
}

/** The system user the daemon runs as (the systemd unit's User=). */
export const DAEMON_USER = 'vhost-user-balloon';

