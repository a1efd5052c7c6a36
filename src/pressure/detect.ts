// Choosing the host pressure source: cgroup v1 vmpressure where the memory
// controller is mounted as v1, PSI otherwise. An explicit choice is checked,
// never silently replaced; what cannot work is a startup error naming the
// path and what to do (PressureError, EBALLOON_PRESSURE_*).
import { existsSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { BalloonError } from '../errors.js';
import { cgroupLayout } from '../host/cgroups.js';
import type { FdWatcher } from '../transport/event-loop.js';
import { PressureError } from './errors.js';
import { DEFAULT_PSI_TRIGGER, PsiSource, PsiTrigger, psiTriggerText } from './psi.js';
import { PressureSource, VMPRESSURE_LEVELS, VMPRESSURE_MODES, VmpressureLevel, VmpressureMode } from './types.js';
import { VmpressureSource } from './vmpressure.js';

export const DEFAULT_V1_MEMCG = '/sys/fs/cgroup/memory';
export const SYSTEM_PSI = '/proc/pressure/memory';

export interface PressureConfig {
  kind: 'auto' | 'vmpressure' | 'psi' | 'none';
  /** cgroup v1 memcg directory (vmpressure) or cgroup v2 directory (psi). */
  memcg?: string;
  level: VmpressureLevel;
  mode?: VmpressureMode;
  psiTrigger: PsiTrigger;
}

export const DEFAULT_PRESSURE: PressureConfig = { kind: 'auto', level: 'low', psiTrigger: DEFAULT_PSI_TRIGGER };

export type Plan =
  | { kind: 'vmpressure'; memcg: string; level: VmpressureLevel; mode?: VmpressureMode }
  | { kind: 'psi'; file: string; trigger: PsiTrigger }
  | { kind: 'none' };

/** What detection needs of the mounts (from /proc/self/mountinfo: src/host/cgroups.ts). */
export interface CgroupMounts {
  /** Mount point of the cgroup v1 hierarchy holding the memory controller. */
  v1Memory: string | null;
  /** Mount point of the cgroup2 hierarchy (/sys/fs/cgroup on v2-only hosts, .../unified on hybrid ones). */
  unified: string | null;
}

/** What detection looks at; injectable for tests. */
export interface Probe {
  exists(path: string): boolean;
  isDir(path: string): boolean;
  mounts(): CgroupMounts;
}

export const systemProbe: Probe = {
  exists: existsSync,
  isDir: (p) => {
    try {
      return statSync(p).isDirectory();
    } catch {
      return false;
    }
  },
  mounts: () => {
    const l = cgroupLayout();
    return { v1Memory: l.v1Memory, unified: l.v2 };
  },
};

function checkLevel(cfg: PressureConfig): void {
  if (!VMPRESSURE_LEVELS.includes(cfg.level)) {
    throw new BalloonError('EBALLOON_CONFIG', `--pressure-level ${JSON.stringify(cfg.level)} is not allowed`, `allowed: ${VMPRESSURE_LEVELS.join(', ')}`);
  }
  if (cfg.mode !== undefined && !VMPRESSURE_MODES.includes(cfg.mode)) {
    throw new BalloonError('EBALLOON_CONFIG', `--pressure-mode ${JSON.stringify(cfg.mode)} is not allowed`, `allowed: ${VMPRESSURE_MODES.join(', ')}`);
  }
}

/**
 * Decide what to watch. Throws PressureError (missing path, missing
 * controller) or BalloonError EBALLOON_CONFIG (bad option). Permission
 * problems show when the source starts (open/write), with the same codes.
 */
export function planPressure(cfg: PressureConfig, probe: Partial<Probe> = {}): Plan {
  const p: Probe = { ...systemProbe, ...probe };
  if (cfg.kind === 'none') return { kind: 'none' };
  checkLevel(cfg);
  if (cfg.memcg !== undefined && !isAbsolute(cfg.memcg)) {
    throw new BalloonError('EBALLOON_CONFIG', `--memcg ${cfg.memcg} is not an absolute path`, 'give the cgroup directory, e.g. /sys/fs/cgroup/memory/machine.slice');
  }
  const vm = (memcg: string): Plan => ({ kind: 'vmpressure', memcg, level: cfg.level, ...(cfg.mode ? { mode: cfg.mode } : {}) });
  const psi = (file: string): Plan => ({ kind: 'psi', file, trigger: cfg.psiTrigger });
  const hasV1 = (dir: string) => p.exists(join(dir, 'memory.pressure_level'));
  const hasPsi = (dir: string) => p.exists(join(dir, 'memory.pressure'));
  const missing = (path: string, hint: string) => new PressureError('EBALLOON_PRESSURE_NOENT', path, `${path} does not exist`, hint);
  const mounts = p.mounts();

  switch (cfg.kind) {
    case 'vmpressure': {
      const memcg = cfg.memcg ?? mounts.v1Memory ?? DEFAULT_V1_MEMCG;
      if (!p.isDir(memcg)) {
        throw cfg.memcg === undefined && !mounts.v1Memory
          ? new PressureError('EBALLOON_PRESSURE_CONTROLLER', memcg, 'the cgroup v1 memory controller is not mounted',
            'mount it (mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory), or use --pressure psi on cgroup v2 hosts')
          : missing(memcg, 'give --memcg the directory of a cgroup v1 memory cgroup (e.g. /sys/fs/cgroup/memory/machine.slice), or create it');
      }
      if (!hasV1(memcg)) {
        throw new PressureError('EBALLOON_PRESSURE_CONTROLLER', memcg, `${memcg} has no memory.pressure_level: not a cgroup v1 memory cgroup`,
          hasPsi(memcg) ? 'this is a cgroup v2 directory: use --pressure psi (or auto)' : 'give --memcg a directory under the v1 memory mount');
      }
      return vm(memcg);
    }
    case 'psi': {
      const file = cfg.memcg ? join(cfg.memcg, 'memory.pressure') : SYSTEM_PSI;
      if (cfg.memcg && !p.isDir(cfg.memcg)) throw missing(cfg.memcg, 'give --memcg an existing cgroup v2 directory, or leave it out for system-wide PSI');
      if (!p.exists(file)) {
        if (cfg.memcg && hasV1(cfg.memcg)) {
          throw new PressureError('EBALLOON_PRESSURE_CONTROLLER', file, `${cfg.memcg} is a cgroup v1 memory cgroup: it has no memory.pressure`, 'use --pressure vmpressure (or auto)');
        }
        throw new PressureError('EBALLOON_PRESSURE_CONTROLLER', file, `${file} does not exist: no PSI here`,
          cfg.memcg ? 'give --memcg a directory of the cgroup v2 (unified) hierarchy, or leave it out for /proc/pressure/memory'
            : 'this kernel has no PSI (CONFIG_PSI; boot with psi=1), or use --pressure vmpressure');
      }
      return psi(file);
    }
    case 'auto': {
      if (cfg.memcg !== undefined) {
        if (!p.isDir(cfg.memcg)) throw missing(cfg.memcg, 'check --memcg: a cgroup v1 memory directory or a cgroup v2 directory');
        if (hasV1(cfg.memcg)) return vm(cfg.memcg);
        if (hasPsi(cfg.memcg)) return psi(join(cfg.memcg, 'memory.pressure'));
        throw new PressureError('EBALLOON_PRESSURE_CONTROLLER', cfg.memcg,
          `${cfg.memcg} is neither a cgroup v1 memcg (memory.pressure_level) nor a cgroup v2 group (memory.pressure)`,
          'give a directory under the v1 memory mount or the cgroup2 mount, or choose --pressure vmpressure|psi|none');
      }
      if (mounts.v1Memory && hasV1(mounts.v1Memory)) return vm(mounts.v1Memory);
      if (p.exists(SYSTEM_PSI)) return psi(SYSTEM_PSI);
      throw new PressureError('EBALLOON_PRESSURE_CONTROLLER', SYSTEM_PSI, 'no host memory pressure source: no cgroup v1 memory controller mounted and no PSI',
        'mount the v1 memory controller or enable PSI (psi=1); or run with --pressure none and set targets by hand');
    }
  }
}

export function describePlan(plan: Plan): string {
  switch (plan.kind) {
    case 'vmpressure':
      return `vmpressure ${plan.level}${plan.mode ? `,${plan.mode}` : ''} on ${plan.memcg}`;
    case 'psi':
      return `psi "${psiTriggerText(plan.trigger)}" on ${plan.file}`;
    case 'none':
      return 'none';
  }
}

export function createSource(plan: Plan, loop: FdWatcher): PressureSource | null {
  switch (plan.kind) {
    case 'vmpressure':
      return new VmpressureSource(loop, plan.memcg, plan.level, plan.mode);
    case 'psi':
      return new PsiSource(loop, plan.file, plan.trigger);
    case 'none':
      return null;
  }
}
