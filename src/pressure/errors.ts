// Host pressure errors. Each is a BalloonError with code EBALLOON_PRESSURE
// (or EBALLOON_CONFIG for a bad option) and a stable, more precise
// `pressureCode` that scripts and tests can match on. The message names the
// path; the hint says what to do.
import { BalloonError } from '../errors.js';
import { chownCommand, selfDescription, selfName } from '../host/privileges.js';
import { strerror } from '../transport/libc.js';

export type PressureErrorCode =
  /** The memcg, cgroup or pressure file does not exist. */
  | 'EBALLOON_PRESSURE_NOENT'
  /** The path exists but is not what the source needs (no v1 memory controller, no PSI). */
  | 'EBALLOON_PRESSURE_CONTROLLER'
  /** Opening or writing a control file was refused (EACCES, EPERM, EROFS). */
  | 'EBALLOON_PRESSURE_PERMISSION'
  /** The kernel refused the registration line or the PSI trigger (EINVAL, ...). */
  | 'EBALLOON_PRESSURE_REGISTER'
  /** At run time: the memcg went away or the eventfd failed (logged and retried). */
  | 'EBALLOON_PRESSURE_LOST';

export class PressureError extends BalloonError {
  constructor(readonly pressureCode: PressureErrorCode, readonly path: string, message: string, hint?: string, readonly errno?: number) {
    super('EBALLOON_PRESSURE', `${pressureCode}: ${message}`, hint);
    this.name = 'PressureError';
  }
}

export const ENOENT = 2;
export const EPERM = 1;
export const EACCES = 13;
export const EINVAL = 22;
export const EROFS = 30;
export const ENOTDIR = 20;
export const EOPNOTSUPP = 95;

export function isPressureError(err: unknown, code?: PressureErrorCode): err is PressureError {
  return err instanceof PressureError && (code === undefined || err.pressureCode === code);
}

/** open() of a control file failed: say which file and what to do. */
export function openError(path: string, err: number, what: 'memcg' | 'psi'): PressureError {
  const why = `cannot open ${path}: ${strerror(err)}`;
  if (err === ENOENT || err === ENOTDIR) {
    return new PressureError('EBALLOON_PRESSURE_NOENT', path, why, what === 'memcg'
      ? 'the memcg does not exist: check --memcg (a cgroup v1 memory directory such as /sys/fs/cgroup/memory/machine.slice) or create it'
      : 'the pressure file does not exist: check --memcg (a cgroup v2 directory) or leave it out for /proc/pressure/memory', err);
  }
  if (err === EROFS) {
    return new PressureError('EBALLOON_PRESSURE_PERMISSION', path, why,
      'the cgroup filesystem is mounted read-only: remount it read-write or choose another --memcg', err);
  }
  if (err === EACCES || err === EPERM) return permissionError(path, err, why, what);
  return new PressureError('EBALLOON_PRESSURE_REGISTER', path, why, 'check --memcg and that the memory controller is mounted', err);
}

/**
 * A right the daemon's user lacks: name the file, the user, and the command
 * that grants it (docs/privileges.md). EPERM on a PSI file is the kernel's
 * capability rule, not the file mode.
 */
function permissionError(path: string, err: number, why: string, what: 'memcg' | 'psi'): PressureError {
  const user = selfName();
  const access = path.endsWith('/memory.pressure_level') ? 'read' : 'write';
  const message = `${why}; the daemon runs as ${selfDescription()} and needs ${access} access to it`;
  if (what === 'psi' && err === EPERM) {
    return new PressureError('EBALLOON_PRESSURE_PERMISSION', path, message,
      'this kernel lets only CAP_SYS_RESOURCE create PSI triggers here (Linux before 6.4 for /proc/pressure, 6.4 to 6.6 for cgroup files): '
      + 'give the daemon CAP_SYS_RESOURCE (systemd: AmbientCapabilities=CAP_SYS_RESOURCE), or use cgroup v1 vmpressure; see docs/privileges.md', err);
  }
  const grant = path.startsWith('/proc/')
    ? `PSI triggers in /proc/pressure need Linux 6.4 or later without CAP_SYS_RESOURCE (systemd: AmbientCapabilities=CAP_SYS_RESOURCE); or watch a cgroup v2 group with --memcg and, as root: ${chownCommand(user, '<group>/memory.pressure')}`
    : `as root: ${chownCommand(user, path)}`
      + ` (or run "vhost-user-balloon --grant ${user}" as root with the daemon's options: the systemd unit does, with --host, for the VMs of its config and state directories; the libvirt hook grants each domain it adds); see docs/privileges.md`;
  return new PressureError('EBALLOON_PRESSURE_PERMISSION', path, message, `give ${user} ${access} access to ${path}, ${grant}`, err);
}
