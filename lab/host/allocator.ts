// A memory-hungry neighbour: a child process that joins a cgroup, allocates
// and keeps touching `mib` MiB of anonymous memory until killed.
import { type ChildProcess, spawn } from 'node:child_process';

export interface Allocator {
  child: ChildProcess;
  /** Resolves once every page was touched once. */
  allocated: Promise<void>;
  kill(): Promise<void>;
}

const SCRIPT = `
  const fs = require('fs');
  const [dir, mib, stepMiB, pauseMs] = [process.argv[1], ...process.argv.slice(2).map(Number)];
  fs.writeFileSync(dir + '/cgroup.procs', String(process.pid));
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const bufs = [];
  for (let i = 0; i < mib; i++) {
    const b = Buffer.allocUnsafe(1 << 20);
    for (let o = 0; o < b.length; o += 4096) b[o] = 1;
    bufs.push(b);
    if ((i + 1) % stepMiB === 0) Atomics.wait(nap, 0, 0, pauseMs);
  }
  console.log('allocated');
  for (;;) for (const b of bufs) for (let o = 0; o < b.length; o += 4096) b[o]++;
`;

export interface AllocatorPace {
  /** Allocate this much, then pause (default: everything at once). */
  stepMiB?: number;
  pauseMs?: number;
}

/** Grows to `mib` MiB (in steps when paced), then keeps touching it until killed. */
export function startAllocator(memcgPath: string, mib: number, pace: AllocatorPace = {}): Allocator {
  const args = ['-e', SCRIPT, memcgPath, String(mib), String(pace.stepMiB ?? mib), String(pace.pauseMs ?? 0)];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const allocated = new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (b: Buffer) => { if (b.toString().includes('allocated')) resolve(); });
    child.once('exit', (code, sig) => reject(new Error(`allocator exited (${sig ?? code}) before it allocated ${mib} MiB`)));
  });
  allocated.catch(() => {});
  return {
    child,
    allocated,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
