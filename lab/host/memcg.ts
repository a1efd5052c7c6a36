// A memory cgroup made for a job (the demo, tests, benchmarks): limit,
// members, usage, and removal that kills what is left inside. cgroup v1
// (memory.limit_in_bytes; watched with vmpressure) or, on hosts where the
// memory controller is on cgroup2, a cgroup2 group (memory.max; watched with
// PSI). Mounts come from /proc/self/mountinfo (cgroups.ts).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cgroupLayout, memoryCgroupRoot, readControllers } from '../../src/host/cgroups.js';

/** The v1 memory hierarchy's mount point on this host, or null (a v2-only host). */
export function v1MemoryRoot(): string | null {
  return cgroupLayout().v1Memory;
}

const FILES = {
  1: { limit: 'memory.limit_in_bytes', usage: 'memory.usage_in_bytes' },
  2: { limit: 'memory.max', usage: 'memory.current' },
} as const;

export class Memcg {
  private constructor(readonly path: string, readonly version: 1 | 2) {}

  /**
   * mkdir under the v1 memory root (default: where mountinfo says the v1
   * memory controller is) with a limit. Charges do not follow a task that
   * moves in (move_charge_at_immigrate is gone from recent kernels): move
   * processes in before they allocate.
   */
  static create(name: string, limitBytes: number, root: string | null = v1MemoryRoot()): Memcg {
    if (root === null) {
      throw new Error('no cgroup v1 memory hierarchy is mounted (a cgroup v2-only host?): vmpressure needs one; Memcg.createAny makes a cgroup2 group for PSI instead');
    }
    if (!existsSync(join(root, 'memory.pressure_level'))) {
      throw new Error(`${root} is not a cgroup v1 memory hierarchy (no memory.pressure_level): vmpressure needs one`);
    }
    return Memcg.make(join(root, name), 1, limitBytes);
  }

  /**
   * mkdir a cgroup2 group under `root` (a cgroup2 directory whose
   * cgroup.controllers has memory) with memory.max; memory is enabled in
   * root's cgroup.subtree_control first if it is not yet.
   */
  static createV2(name: string, limitBytes: number, root: string): Memcg {
    if (!readControllers(root).includes('memory')) {
      throw new Error(`${root} offers no memory controller (cgroup.controllers): it is bound to a cgroup v1 hierarchy, or not enabled in the parent's cgroup.subtree_control`);
    }
    const subtree = join(root, 'cgroup.subtree_control');
    if (!readFileSync(subtree, 'utf8').split(/\s+/).includes('memory')) {
      try {
        writeFileSync(subtree, '+memory');
      } catch (err) {
        throw new Error(`cannot enable the memory controller in ${subtree}: ${(err as Error).message}`);
      }
    }
    return Memcg.make(join(root, name), 2, limitBytes);
  }

  /**
   * Where this host can: cgroup v1 memory when it is mounted (as the source
   * design), else a cgroup2 group with memory.max (v2-only hosts such as
   * Debian 12). Throws naming what is missing when neither is there.
   */
  static createAny(name: string, limitBytes: number): Memcg {
    const at = memoryCgroupRoot();
    if (!at) {
      throw new Error('no memory cgroup can be made here: no cgroup v1 memory hierarchy is mounted and the cgroup2 root offers no memory controller');
    }
    return at.version === 1 ? Memcg.create(name, limitBytes, at.root) : Memcg.createV2(name, limitBytes, at.root);
  }

  private static make(path: string, version: 1 | 2, limitBytes: number): Memcg {
    mkdirSync(path);
    const m = new Memcg(path, version);
    try {
      m.write(FILES[version].limit, String(limitBytes));
    } catch (err) {
      rmdirSync(path);
      throw new Error(`cannot set ${path}/${FILES[version].limit} to ${limitBytes}: ${(err as Error).message}`);
    }
    return m;
  }

  /** The daemon options that watch this cgroup: vmpressure on v1, PSI on cgroup2. */
  pressureArgs(): string[] {
    return ['--pressure', this.version === 1 ? 'vmpressure' : 'psi', '--memcg', this.path];
  }

  write(file: string, value: string): void {
    writeFileSync(join(this.path, file), value);
  }

  read(file: string): string {
    return readFileSync(join(this.path, file), 'utf8');
  }

  addProcess(pid: number): void {
    this.write('cgroup.procs', String(pid));
  }

  usageBytes(): number {
    return Number(this.read(FILES[this.version].usage));
  }

  /** The limit; Infinity for cgroup2's "max". */
  limitBytes(): number {
    const v = this.read(FILES[this.version].limit).trim();
    return v === 'max' ? Infinity : Number(v);
  }

  /** memory.stat counters (v1: total_swap, total_pgmajfault, ...; cgroup2: anon, pgmajfault, ...). */
  stat(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const line of this.read('memory.stat').split('\n')) {
      const [k, v] = line.split(' ');
      if (k && v !== undefined) out[k] = Number(v);
    }
    return out;
  }

  /** The group's swap use (v1 memory.stat swap, with swap accounting; cgroup2 memory.swap.current); null where not accounted. */
  swapBytes(): number | null {
    if (this.version === 1) return this.stat().swap ?? null;
    try {
      return Number(this.read('memory.swap.current'));
    } catch {
      return null;
    }
  }

  /** Kill what still runs inside, then rmdir (children first). */
  async remove(): Promise<void> {
    await removeCgroupTree(this.path);
  }
}

/** Kill what runs in a cgroup tree and rmdir it, children first. */
export async function removeCgroupTree(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) await removeCgroupTree(join(dir, e.name));
  for (let i = 0; i < 100; i++) {
    let procs: number[] = [];
    try {
      procs = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch { /* gone */ }
    for (const pid of procs) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch { /* already gone */ }
    }
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY') throw err;
    }
    await sleep(50);
  }
  throw new Error(`could not remove ${dir}: processes keep it busy`);
}
