// Choosing the host pressure source: cgroup v1 vmpressure where the memory
// controller is v1, PSI otherwise. Explicit choices are checked, never
// silently replaced.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BalloonError } from '../errors.js';
import type { FdWatcher } from '../transport/event-loop.js';
import { PsiSource, PsiTrigger, DEFAULT_PSI_TRIGGER } from './psi.js';
import { PressureSource, VmpressureLevel, VmpressureMode } from './types.js';
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

/** Decide what to watch. `exists` is injectable for tests. */
export function planPressure(cfg: PressureConfig, exists: (p: string) => boolean = existsSync): Plan {
  const v1 = (memcg: string) => exists(join(memcg, 'memory.pressure_level'));
  switch (cfg.kind) {
    case 'none':
      return { kind: 'none' };
    case 'vmpressure': {
      const memcg = cfg.memcg ?? DEFAULT_V1_MEMCG;
      if (!exists(memcg)) throw new BalloonError('EBALLOON_PRESSURE', `memcg ${memcg} does not exist`, 'give --memcg the directory of a cgroup v1 memory cgroup (e.g. /sys/fs/cgroup/memory/machine.slice)');
      if (!v1(memcg)) throw new BalloonError('EBALLOON_PRESSURE', `${memcg} has no memory.pressure_level: not a cgroup v1 memory controller directory`, 'on cgroup v2 hosts use --pressure psi');
      return { kind: 'vmpressure', memcg, level: cfg.level, ...(cfg.mode ? { mode: cfg.mode } : {}) };
    }
    case 'psi': {
      const file = cfg.memcg ? join(cfg.memcg, 'memory.pressure') : SYSTEM_PSI;
      if (!exists(file)) {
        throw new BalloonError('EBALLOON_PRESSURE', `${file} does not exist`, cfg.memcg
          ? 'give --memcg a cgroup v2 directory with the memory controller enabled, or leave it out for system-wide PSI'
          : 'this kernel has no PSI (CONFIG_PSI, boot with psi=1)');
      }
      return { kind: 'psi', file, trigger: cfg.psiTrigger };
    }
    case 'auto': {
      if (cfg.memcg) {
        if (v1(cfg.memcg)) return { kind: 'vmpressure', memcg: cfg.memcg, level: cfg.level, ...(cfg.mode ? { mode: cfg.mode } : {}) };
        if (exists(join(cfg.memcg, 'memory.pressure'))) return { kind: 'psi', file: join(cfg.memcg, 'memory.pressure'), trigger: cfg.psiTrigger };
        throw new BalloonError('EBALLOON_PRESSURE', `${cfg.memcg} is neither a cgroup v1 memcg (memory.pressure_level) nor a cgroup v2 group with memory.pressure`,
          'check the path, or choose --pressure vmpressure|psi|none explicitly');
      }
      if (v1(DEFAULT_V1_MEMCG)) return { kind: 'vmpressure', memcg: DEFAULT_V1_MEMCG, level: cfg.level, ...(cfg.mode ? { mode: cfg.mode } : {}) };
      if (exists(SYSTEM_PSI)) return { kind: 'psi', file: SYSTEM_PSI, trigger: cfg.psiTrigger };
      throw new BalloonError('EBALLOON_PRESSURE', 'no host memory pressure source found (no cgroup v1 memory controller, no PSI)',
        'mount the memory controller or enable PSI; or run with --pressure none and set targets by hand');
    }
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
