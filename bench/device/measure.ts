// Host-side readings of the device benchmark: the guest RAM memfd's
// allocated blocks, a process's memory and CPU from /proc, and the time until
// QEMU reports a balloon size.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { procMemory, type QmpClient } from '../../lab/vm/index.js';
import { procCpuTicks, type ProcFigures } from './report.js';

/**
 * Allocated bytes of QEMU's guest RAM: st_blocks * 512 of the largest memfd
 * QEMU holds open (memory-backend-memfd; vhost-user may add small ones).
 * Unlike RssShmem this counts pages no process has mapped, too.
 */
export function memfdBytes(pid: number): number {
  const dir = `/proc/${pid}/fd`;
  let best: { size: number; bytes: number } | null = null;
  for (const fd of readdirSync(dir)) {
    let link: string;
    try {
      link = readlinkSync(join(dir, fd));
    } catch {
      continue; // closed meanwhile
    }
    if (!link.startsWith('/memfd:')) continue;
    const st = statSync(join(dir, fd));
    if (!best || st.size > best.size) best = { size: st.size, bytes: st.blocks * 512 };
  }
  if (!best) throw new Error(`QEMU (pid ${pid}) holds no memfd: is guest RAM memory-backend-memfd?`);
  return best.bytes;
}

/** memfdBytes once it stops changing (two readings `stepMs` apart), at most `timeoutMs`. */
export async function settledMemfdBytes(pid: number, stepMs = 100, timeoutMs = 10_000): Promise<number> {
  const end = performance.now() + timeoutMs;
  let last = memfdBytes(pid);
  for (;;) {
    await sleep(stepMs);
    const now = memfdBytes(pid);
    if (now === last || performance.now() > end) return now;
    last = now;
  }
}

let ticksPerSecond: number | undefined;
function clockTicks(): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return ticksPerSecond;
}

const tickSeconds = (pid: number) => procCpuTicks(readFileSync(`/proc/${pid}/stat`, 'utf8')) / clockTicks();

/**
 * Time on CPU of all threads of `pid` (first field of each
 * /proc/PID/task/TID/schedstat, ns): utime + stime count whole clock ticks
 * (10 ms), too coarse for a daemon that idles.
 */
function schedSeconds(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return ns / 1e9;
}

/** CPU of each pid over the same `seconds`, then their memory. */
export async function idleFigures(pids: number[], seconds: number): Promise<ProcFigures[]> {
  const read = () => pids.map((pid) => ({ ticks: tickSeconds(pid), sched: schedSeconds(pid) }));
  const t0 = performance.now();
  const before = read();
  await sleep(seconds * 1000);
  const after = read();
  const window = (performance.now() - t0) / 1000;
  return Promise.all(pids.map(async (pid, i) => {
    const m = await procMemory(pid);
    const a = after[i]!, b = before[i]!;
    const onCpu = a.sched - b.sched;
    return { ...m, cpuSeconds: a.ticks - b.ticks, onCpuSeconds: onCpu, cpuPercent: (onCpu / window) * 100 };
  }));
}

/** Polls query-balloon every `pollMs` until `actual` is `wantBytes`; resolves with performance.now() of that reply. */
export async function actualReached(qmp: QmpClient, wantBytes: number, timeoutMs = 120_000, pollMs = 20): Promise<number> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const actual = await qmp.queryBalloon();
    const at = performance.now();
    if (actual === wantBytes) return at;
    if (at > end) throw new Error(`query-balloon: actual ${actual} B, want ${wantBytes} B, after ${timeoutMs} ms`);
    await sleep(pollMs);
  }
}
