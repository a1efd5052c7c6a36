// Real cgroups for the host-pressure tests: a child memcg with a small limit
// (cgroup v1, for vmpressure), a cgroup2 group for PSI (squeezed through a v1
// memcg on hybrid hosts, through its own memory.max on v2-only hosts), a
// temporary swap file when the machine has none, and an allocator process
// inside. The mounts come from /proc/self/mountinfo (src/host/cgroups.ts),
// never from fixed paths. Everything made here
// carries this process's pid in its name, so a later run can tell a crashed
// run's leftovers (dead pid) from a concurrent run's (live pid) and remove
// only the former.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { EpollLoop } from '../../src/transport/event-loop.js';
import { join } from 'node:path';
import { cgroupLayout } from '../../src/host/cgroups.js';
import { Memcg, removeCgroupTree } from '../../lab/host/memcg.js';
import { ensureSwap as ensureSwapFile, removeSwapFile, type TempSwap } from '../../lab/host/swap.js';

/** This machine's cgroup mounts, as the daemon sees them. */
/**
 * The step policy as it was the default before the host-wide policy: the
 * seed's rules (--policy seed) plus this project's fixes, a 1 s rate limit
 * and waiting for the guest. Tests of those rules ask for them by name.
 */
export const SEED_FIXED_ARGS = ['--policy', 'seed', '--rate-limit', '1s', '--wait-for-guest'];

export const layout = cgroupLayout();
/** The cgroup v1 memory hierarchy (vmpressure), or null on a v2-only host. */
export const V1_MEMORY = layout.v1Memory;
/** The cgroup2 hierarchy: /sys/fs/cgroup on v2-only hosts, /sys/fs/cgroup/unified on hybrid ones; null on v1-only hosts. */
export const V2 = layout.v2;
export const SYSTEM_PSI = '/proc/pressure/memory';
export const PREFIX = 'vub-pressure-';
const SWAP_DIR = '/var/tmp';
const SWAP_PREFIX = 'vub-pressure-swap.';
/** Read-only bind mounts of a memcg (permission tests) live in tmpdir under this prefix. */
export const RO_PREFIX = 'vub-pressure-ro.';
export const MiB = 2 ** 20;

export const isRoot = process.getuid?.() === 0;
/** vmpressure can be watched: a v1 memory hierarchy with memory.pressure_level. */
export const haveV1Memory = V1_MEMORY !== null && existsSync(join(V1_MEMORY, 'memory.pressure_level'));
/** PSI triggers on cgroup2 groups: a cgroup2 mount and PSI in the kernel. */
export const haveV2Psi = V2 !== null && existsSync(SYSTEM_PSI);
/** The cgroup2 root offers the memory controller (memory.max): v2-only hosts. */
export const haveV2Memory = V2 !== null && layout.v2Controllers.includes('memory');
/** A PSI group can be squeezed: by a v1 memcg beside it (hybrid) or by its own memory.max (v2-only). */
export const canSqueezePsiGroup = haveV2Psi && (haveV1Memory || haveV2Memory);

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let seq = 0;

/** Pid embedded in one of our names, or null. */
function ownerPid(name: string, prefix: string): number | null {
  const m = new RegExp(`^${prefix.replace('.', '\\.')}(\\d+)`).exec(name);
  return m ? Number(m[1]) : null;
}

/** Kill what runs in a cgroup tree and remove it, children first. */
export const removeCgroup = removeCgroupTree;

/** A directory in tmpdir for a bind mount, named after this process. */
export const roMountDir = () => join(tmpdir(), `${RO_PREFIX}${process.pid}-${++seq}`);

/** Remove mounts, cgroups and swap files left by runs that died (their pid is gone). */
export async function cleanupLeftovers(): Promise<string[]> {
  const removed: string[] = [];
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const dir = line.split(' ')[1] ?? '';
    const name = dir.slice(tmpdir().length + 1);
    const pid = dir.startsWith(`${tmpdir()}/`) ? ownerPid(name, RO_PREFIX) : null;
    if (pid === null || alive(pid)) continue;
    execFileSync('umount', [dir]);
    rmdirSync(dir);
    removed.push(dir);
  }
  for (const root of [V1_MEMORY, V2]) {
    if (root === null || !existsSync(root)) continue;
    for (const name of readdirSync(root)) {
      const pid = ownerPid(name, PREFIX);
      if (pid === null || alive(pid)) continue;
      await removeCgroup(join(root, name));
      removed.push(join(root, name));
    }
  }
  for (const name of readdirSync(SWAP_DIR)) {
    const pid = ownerPid(name, SWAP_PREFIX);
    if (pid === null || alive(pid)) continue;
    removeSwapFile(join(SWAP_DIR, name));
    removed.push(join(SWAP_DIR, name));
  }
  return removed;
}

/** A fresh name: prefix, our pid, a counter and a random tag. */
export const uniqueName = (what: string) => `${PREFIX}${process.pid}-${++seq}-${Math.random().toString(36).slice(2, 8)}-${what}`;

export type { TempSwap };

/** Make sure some swap is on: reclaim of anonymous memory (the allocator) needs it. */
export function ensureSwap(sizeMiB = 512): TempSwap {
  return ensureSwapFile(join(SWAP_DIR, `${SWAP_PREFIX}${process.pid}`), sizeMiB);
}

export interface TestCgroup {
  /** The cgroup v1 memcg directory. */
  v1: string;
  /** Kill what runs inside and remove it. */
  remove(): Promise<void>;
}

/** A memcg under the v1 memory root (or under `parent`), with a limit: what vmpressure watches. */
export function makeCgroup(opts: { limitBytes?: number; parent?: string; name?: string } = {}): TestCgroup {
  const name = opts.name ?? uniqueName('memcg');
  const root = opts.parent ?? V1_MEMORY;
  if (root === null) throw new Error('makeCgroup: no cgroup v1 memory hierarchy here (gate the test on haveV1Memory)');
  const v1 = join(root, name);
  mkdirSync(v1);
  if (opts.limitBytes) writeFileSync(join(v1, 'memory.limit_in_bytes'), String(opts.limitBytes));
  return { v1, remove: () => removeCgroup(v1) };
}

export interface PsiGroup {
  /** The cgroup2 group whose memory.pressure is watched. */
  dir: string;
  psiFile: string;
  /** Where a process joins (each cgroup.procs): the v1 memcg too on hybrid hosts. */
  members: string[];
  /** The limited v1 memcg beside it (hybrid hosts with a limit), else null. */
  v1: string | null;
  remove(): Promise<void>;
}

/**
 * A cgroup2 group for PSI. With `limitBytes` it is squeezable: on a hybrid
 * host through a v1 memcg with that limit that the allocator joins as well
 * (PSI accounts stalls by cgroup2 membership, whatever hierarchy reclaims);
 * on a v2-only host through its own memory.max (Memcg.createV2, as the demo).
 */
export function makePsiGroup(opts: { limitBytes?: number; name?: string } = {}): PsiGroup {
  if (V2 === null) throw new Error('makePsiGroup: no cgroup2 mount here (gate the test on haveV2Psi)');
  const name = opts.name ?? uniqueName('psi');
  const dir = join(V2, name);
  let v1: string | null = null;
  if (opts.limitBytes && haveV1Memory) {
    v1 = makeCgroup({ limitBytes: opts.limitBytes, name }).v1;
    mkdirSync(dir);
  } else if (opts.limitBytes) {
    if (!haveV2Memory) throw new Error('makePsiGroup: nothing can limit the group (gate the test on canSqueezePsiGroup)');
    Memcg.createV2(name, opts.limitBytes, V2);
  } else {
    mkdirSync(dir);
  }
  return {
    dir, v1, psiFile: join(dir, 'memory.pressure'), members: v1 ? [v1, dir] : [dir],
    remove: async () => {
      if (v1) await removeCgroup(v1);
      await removeCgroup(dir);
    },
  };
}

export interface Allocator {
  child: ChildProcess;
  /** performance.now() when spawned and when it had joined its cgroups. */
  spawnedAt: number;
  joined: Promise<number>;
  /** Resolves when the allocation loop finished its first pass (all pages touched once). */
  allocated: Promise<number>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(): Promise<void>;
}

/**
 * A `node -e` child that writes its pid to each cgroup.procs, then allocates
 * `mib` MiB of Buffers touching every 4 KiB page, and keeps touching them
 * for `holdMs` (sustained reclaim and swap-in) before it exits.
 */
export function startAllocator(cgroups: string[], mib = 200, holdMs = 60_000): Allocator {
  const script = `
    const fs = require('fs');
    for (const dir of JSON.parse(process.argv[1])) fs.writeFileSync(dir + '/cgroup.procs', String(process.pid));
    console.log('joined');
    const bufs = [];
    for (let i = 0; i < ${mib}; i++) {
      const b = Buffer.allocUnsafe(1 << 20);
      for (let o = 0; o < b.length; o += 4096) b[o] = 1;
      bufs.push(b);
    }
    console.log('allocated');
    const end = Date.now() + ${holdMs};
    while (Date.now() < end) for (const b of bufs) for (let o = 0; o < b.length; o += 4096) b[o]++;
  `;
  const child = spawn(process.execPath, ['-e', script, JSON.stringify(cgroups)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const spawnedAt = performance.now();
  let out = '';
  const seen = new Map<string, (t: number) => void>();
  const waitFor = (word: string) => new Promise<number>((resolve, reject) => {
    seen.set(word, resolve);
    child.once('exit', () => reject(new Error(`allocator exited before "${word}"`)));
  });
  const joined = waitFor('joined');
  const allocated = waitFor('allocated');
  joined.catch(() => {});
  allocated.catch(() => {});
  child.stdout!.on('data', (b: Buffer) => {
    out += b.toString();
    for (const [word, resolve] of seen) if (out.includes(word)) resolve(performance.now());
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  return {
    child, spawnedAt, joined, allocated, exited,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Wait until `cond` holds, polling; throws with `what` after `timeoutMs`. */
export async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

export { sleep };

export interface CgroupRig {
  /** Removed (children first) after each test. */
  cgroups: Array<TestCgroup | PsiGroup>;
  /** Killed after each test. */
  allocators: Allocator[];
  /** Called after each test (sources to stop). */
  stops: Array<() => void>;
  /** The daemon's default (uv) event loop, made in beforeAll. */
  readonly loop: EpollLoop;
}

/** Hooks for a describe block on real cgroups: leftovers cleaned, swap on, one loop, per-test cleanup. */
export function useCgroupRig(): CgroupRig {
  let swap: TempSwap | undefined;
  let loop: EpollLoop | undefined;
  const rig: CgroupRig = {
    cgroups: [], allocators: [], stops: [],
    get loop(): EpollLoop {
      if (!loop) throw new Error('the cgroup rig is used outside its describe block');
      return loop;
    },
  };
  beforeAll(async () => {
    await cleanupLeftovers();
    swap = ensureSwap();
    loop = new EpollLoop();
  });
  afterEach(async () => {
    for (const stop of rig.stops.splice(0)) stop();
    for (const a of rig.allocators.splice(0)) await a.kill();
    for (const c of rig.cgroups.splice(0).reverse()) await c.remove();
  });
  afterAll(() => {
    loop?.close();
    swap?.remove();
  });
  return rig;
}
