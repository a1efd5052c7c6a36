// A cgroup v1 memory cgroup made for a job (the demo, tests): limit, members,
// usage, and removal that kills what is left inside.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const V1_MEMORY_ROOT = '/sys/fs/cgroup/memory';

export class Memcg {
  private constructor(readonly path: string) {}

  /**
   * mkdir under the v1 memory root with a limit. Charges do not follow a task
   * that moves in (move_charge_at_immigrate is gone from recent kernels):
   * move processes in before they allocate.
   */
  static create(name: string, limitBytes: number, root = V1_MEMORY_ROOT): Memcg {
    if (!existsSync(join(root, 'memory.pressure_level'))) {
      throw new Error(`${root} is not a cgroup v1 memory hierarchy (no memory.pressure_level): vmpressure needs one`);
    }
    const path = join(root, name);
    mkdirSync(path);
    const m = new Memcg(path);
    try {
      m.write('memory.limit_in_bytes', String(limitBytes));
    } catch (err) {
      rmdirSync(path);
      throw new Error(`cannot set ${path}/memory.limit_in_bytes to ${limitBytes}: ${(err as Error).message}`);
    }
    return m;
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
    return Number(this.read('memory.usage_in_bytes'));
  }

  limitBytes(): number {
    return Number(this.read('memory.limit_in_bytes'));
  }

  /** memory.stat counters (total_swap, total_pgmajfault, ...). */
  stat(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const line of this.read('memory.stat').split('\n')) {
      const [k, v] = line.split(' ');
      if (k && v !== undefined) out[k] = Number(v);
    }
    return out;
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
