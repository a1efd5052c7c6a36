// Accelerator choice: KVM only where it is real. Nested paravirtual KVM
// (module kvm_pvm) exposes /dev/kvm, but a stock guest kernel crawls on it and
// `-cpu host` aborts, so it counts as no KVM at all.
import { closeSync, constants, existsSync, openSync, readFileSync } from 'node:fs';

export interface AccelProbe {
  /** /dev/kvm opened read-write. */
  kvmOpenable: boolean;
  /** kvm_pvm is loaded or built in (/sys/module/kvm_pvm or /proc/modules). */
  kvmPvm: boolean;
  /** VUB_ACCEL=kvm|tcg from the environment, if set. */
  override?: string | undefined;
}

export type AccelKind = 'kvm' | 'tcg';

export interface AccelChoice {
  accel: AccelKind;
  cpu: 'host' | 'qemu64';
  reason: string;
}

const KVM: Omit<AccelChoice, 'reason'> = { accel: 'kvm', cpu: 'host' };
const TCG: Omit<AccelChoice, 'reason'> = { accel: 'tcg', cpu: 'qemu64' };

/** Pure decision. An explicit override wins, except KVM on kvm_pvm (it cannot work). */
export function chooseAccel(p: AccelProbe): AccelChoice {
  const o = p.override?.trim().toLowerCase();
  if (o === 'tcg') return { ...TCG, reason: 'VUB_ACCEL=tcg' };
  if (o === 'kvm' && p.kvmOpenable && !p.kvmPvm) return { ...KVM, reason: 'VUB_ACCEL=kvm' };
  if (p.kvmPvm) return { ...TCG, reason: '/dev/kvm is nested paravirtual KVM (kvm_pvm): unusable' };
  if (!p.kvmOpenable) return { ...TCG, reason: '/dev/kvm cannot be opened' };
  return { ...KVM, reason: '/dev/kvm is usable' };
}

export function accelArgs(c: AccelChoice): string[] {
  return ['-accel', c.accel, '-cpu', c.cpu];
}

export interface ProbePaths {
  kvmDev: string;
  sysModule: string;
  procModules: string;
}
const HOST_PATHS: ProbePaths = { kvmDev: '/dev/kvm', sysModule: '/sys/module', procModules: '/proc/modules' };

/** Thin probe of this machine; every failure reads as "not available". Paths are injectable for tests. */
export function probeAccel(env: NodeJS.ProcessEnv = process.env, paths: ProbePaths = HOST_PATHS): AccelProbe {
  let kvmOpenable = false;
  try {
    closeSync(openSync(paths.kvmDev, constants.O_RDWR));
    kvmOpenable = true;
  } catch {
    // absent or no permission
  }
  // Built-in kvm_pvm (as here) shows only in /sys/module; a loadable one also in /proc/modules.
  let kvmPvm = existsSync(`${paths.sysModule}/kvm_pvm`);
  if (!kvmPvm) {
    try {
      kvmPvm = /^kvm_pvm\s/m.test(readFileSync(paths.procModules, 'utf8'));
    } catch {
      // no module support
    }
  }
  return { kvmOpenable, kvmPvm, override: env.VUB_ACCEL };
}

export function detectAccel(env: NodeJS.ProcessEnv = process.env): AccelChoice {
  return chooseAccel(probeAccel(env));
}
