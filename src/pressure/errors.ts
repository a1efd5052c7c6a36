// Host pressure errors. Each is a BalloonError with code EBALLOON_PRESSURE
// (or EBALLOON_CONFIG for a bad option) and a stable, more precise
// `pressureCode` that scripts and tests can match on. The message names the
// path; the hint says what to do.
import { BalloonError } from '../errors.js';
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
  if (err === EACCES || err === EPERM || err === EROFS) {
    return new PressureError('EBALLOON_PRESSURE_PERMISSION', path, why,
      err === EROFS ? 'the cgroup filesystem is mounted read-only: remount it read-write or choose another --memcg'
        : 'run the daemon as root, or give its user read access to memory.pressure_level and write access to cgroup.event_control (PSI: write access to memory.pressure)', err);
  }
  return new PressureError('EBALLOON_PRESSURE_REGISTER', path, why, 'check --memcg and that the memory controller is mounted', err);
}
