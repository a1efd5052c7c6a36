// Where the cgroup hierarchies are mounted, read from /proc/self/mountinfo:
// never assumed from a path. Hosts come in three layouts:
//   - v2 only (Debian 12 with systemd): cgroup2 at /sys/fs/cgroup, the
//     memory controller in it (memory.max, memory.pressure);
//   - hybrid (this project's test machines, systemd's old default): v1
//     controllers at /sys/fs/cgroup/<ctrl> (memory: vmpressure), cgroup2 at
//     /sys/fs/cgroup/unified with no controllers, yet memory.pressure (PSI)
//     in every group;
//   - v1 only.
// The daemon's pressure detection, the demo and the tests' gates all ask here.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CgroupMount {
  /** Where it is mounted (octal escapes such as \040 undone). */
  mountPoint: string;
  version: 1 | 2;
  /** The directory of the hierarchy this mount shows ("/" unless it is a bind mount of a group, or in a cgroup namespace). */
  root: string;
  /** v1: the controllers in the mount options (and name=... for named hierarchies). v2: empty here (see CgroupLayout.v2Controllers). */
  options: string[];
}

export type LayoutKind = 'v2' | 'hybrid' | 'v1' | 'none';

export interface CgroupLayout {
  kind: LayoutKind;
  mounts: CgroupMount[];
  /** Mount point of the v1 hierarchy holding the memory controller (its root shown), or null. */
  v1Memory: string | null;
  /** Mount point of the cgroup2 hierarchy (its root shown), or null. */
  v2: string | null;
  /** Controllers the cgroup2 root offers (its cgroup.controllers): "memory" only when no v1 hierarchy holds it. */
  v2Controllers: string[];
}

const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/**
 * The cgroup mounts in /proc/PID/mountinfo text:
 * "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS".
 */
export function parseMountinfo(text: string): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const dash = f.indexOf('-', 6);
    if (dash < 0 || f.length < dash + 4) continue;
    const type = f[dash + 1];
    if (type !== 'cgroup' && type !== 'cgroup2') continue;
    out.push({
      mountPoint: unescape(f[4]!),
      root: unescape(f[3]!),
      version: type === 'cgroup' ? 1 : 2,
      options: type === 'cgroup' ? f[dash + 3]!.split(',').filter((o) => o !== 'rw' && o !== 'ro') : [],
    });
  }
  return out;
}

/** The first mount that shows the whole hierarchy; a bind mount of one group only if there is nothing else. */
function pick(mounts: CgroupMount[]): string | null {
  return (mounts.find((m) => m.root === '/') ?? mounts[0])?.mountPoint ?? null;
}

const V1_CONTROLLERS = new Set(['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'net_cls', 'blkio', 'perf_event',
  'net_prio', 'hugetlb', 'pids', 'rdma', 'misc']);

/** The layout these mounts make; `controllers(dir)` reads a cgroup2 cgroup.controllers. */
export function layoutOf(mounts: CgroupMount[], controllers: (dir: string) => string[] = readControllers): CgroupLayout {
  const v1 = mounts.filter((m) => m.version === 1);
  const v1Memory = pick(v1.filter((m) => m.options.includes('memory')));
  const v2 = pick(mounts.filter((m) => m.version === 2));
  // A v1 mount with no controller (name=systemd alone) does not make a host hybrid.
  const v1Ctl = v1.some((m) => m.options.some((o) => V1_CONTROLLERS.has(o)));
  const kind: LayoutKind = v2 ? (v1Ctl ? 'hybrid' : 'v2') : v1Ctl ? 'v1' : 'none';
  return { kind, mounts, v1Memory, v2, v2Controllers: v2 ? controllers(v2) : [] };
}

export function readControllers(dir: string): string[] {
  try {
    return readFileSync(join(dir, 'cgroup.controllers'), 'utf8').split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}

/** This process's view (its mount namespace). Read anew on each call: mounts change. */
export function cgroupLayout(mountinfo?: string): CgroupLayout {
  let text = mountinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/mountinfo', 'utf8');
    } catch {
      text = '';
    }
  }
  return layoutOf(parseMountinfo(text));
}

/** Where a memory cgroup with a limit can be made, and which pressure source watches it. */
export interface MemoryCgroupRoot {
  /** 1: a v1 memcg, memory.limit_in_bytes, vmpressure. 2: a cgroup2 group, memory.max, PSI. */
  version: 1 | 2;
  root: string;
}

/**
 * The hierarchy to make a limited memory cgroup in: the v1 memory mount when
 * there is one (vmpressure), else cgroup2 when its root offers the memory
 * controller (memory.max, PSI); null when neither.
 */
export function memoryCgroupRoot(layout: CgroupLayout = cgroupLayout()): MemoryCgroupRoot | null {
  if (layout.v1Memory) return { version: 1, root: layout.v1Memory };
  if (layout.v2 && layout.v2Controllers.includes('memory')) return { version: 2, root: layout.v2 };
  return null;
}
