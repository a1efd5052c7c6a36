// Cost at scale: N simulated guests (test/sim) on one host daemon (--host,
// N devices) or on N single-VM daemons (--socket-path, one process each).
// Per (arm, N, run): the daemons' RSS and PSS (smaps_rollup, summed over
// processes), CPU over an idle window (stats every 5 s), and every inflate
// buffer's post -> acknowledgement latency while all devices inflate at
// once. Figures, not a test: `npm run bench:scale -- --help`.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';

import { DaemonProcess } from '../test/sim/daemon.js';
import { PFNS_PER_BUFFER, SimGuest } from '../test/sim/driver.js';
import { PAGE } from '../test/sim/guest-memory.js';
import { sleep, until } from '../test/sim/wait.js';
import {
  addMemory, ARMS, type Arm, inflateFigures, markdownTables, type Memory, parseRssFile, parseSmapsRollup, procCpuTicks, type Results,
  type RunResult, schedstatNs, ZERO_MEMORY,
} from './scale/report.js';

const MiB = 2 ** 20;
const GUEST_RAM_MIB = 64;
const STATS_INTERVAL_S = 5;

const HELP = `usage: node dist/bench/scale.js [options]
  --sizes 1,10,50,100     guests (devices) per run
  --arms host,per-vm      host: one --host daemon; per-vm: one --socket-path daemon per guest
  --runs 3                runs per (arm, N), interleaved
  --idle-seconds 30       idle CPU window
  --buffers 8             256-PFN inflate buffers per device, all devices at once
  --out docs/scale/results.json   results JSON (a markdown table goes beside it, .md)
  --from FILE             re-print the tables of a results JSON, run nothing`;

const { values: a } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1,10,50,100' },
    arms: { type: 'string', default: ARMS.join(',') },
    runs: { type: 'string', default: '3' },
    'idle-seconds': { type: 'string', default: '30' },
    buffers: { type: 'string', default: '8' },
    out: { type: 'string', default: 'docs/scale/results.json' },
    from: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

let ticksPerSecond = 0;
const tps = () => (ticksPerSecond ||= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100);

function memoryOf(pids: number[]): Memory {
  return pids.reduce((m, pid) => addMemory(m, {
    ...parseSmapsRollup(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')),
    rssFileKiB: parseRssFile(readFileSync(`/proc/${pid}/status`, 'utf8')),
  }), ZERO_MEMORY);
}

const ticksOf = (pids: number[]) => pids.reduce((n, pid) => n + procCpuTicks(readFileSync(`/proc/${pid}/stat`, 'utf8')), 0);

function schedMs(pids: number[], mainOnly: boolean): number {
  let ns = 0;
  for (const pid of pids) {
    const tids = mainOnly ? [String(pid)] : readdirSync(`/proc/${pid}/task`);
    for (const tid of tids) {
      try {
        ns += schedstatNs(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8'));
      } catch {
        continue; // thread gone
      }
    }
  }
  return ns / 1e6;
}

/** Up to `width` of `fn` at a time over `items`. */
async function pool<T, R>(items: T[], width: number, fn: (t: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  }));
  return out;
}

interface Setup {
  daemons: DaemonProcess[];
  sockets: string[];
}

async function startArm(arm: Arm, n: number): Promise<Setup> {
  const args = ['--log-level', 'info', '--stats-interval', String(STATS_INTERVAL_S)];
  if (arm === 'host') {
    const d = await DaemonProcess.startHost(['--log-level', 'info']);
    const sockets: string[] = [];
    for (let i = 0; i < n; i++) sockets.push(await d.addVm(`vm${i}`, { 'stats-interval': STATS_INTERVAL_S }));
    return { daemons: [d], sockets };
  }
  // Node's start-up is CPU-bound: a few at a time on this 2-core machine.
  const daemons = await pool(Array.from({ length: n }, (_, i) => i), 3, () => DaemonProcess.start(args));
  return { daemons, sockets: daemons.map((d) => d.socketPath) };
}

async function oneRun(arm: Arm, n: number, run: number, idleSeconds: number, buffers: number): Promise<RunResult> {
  const loadAvg = loadavg()[0]!;
  const t0 = performance.now();
  const { daemons, sockets } = await startArm(arm, n);
  const pids = daemons.map((d) => d.child.pid!);
  const guests: SimGuest[] = [];
  try {
    for (const s of sockets) guests.push(await SimGuest.start({ socketPath: s, ramBytes: GUEST_RAM_MIB * MiB, autoStats: true }));
    // The pages each guest will balloon are resident, so the inflate frees real memory.
    const inflateBytes = buffers * PFNS_PER_BUFFER * PAGE;
    for (const g of guests) g.mem.touch(g.mem.usableEnd - inflateBytes, inflateBytes);
    // Set up = every device has asked for stats once (its timer runs from then on).
    if (!(await until(() => guests.every((g) => g.statsRequestsServed >= 1), 60_000, 100))) {
      throw new Error(`${arm} N=${n}: not every guest got a stats request within 60 s`);
    }
    const setupSeconds = (performance.now() - t0) / 1000;

    const served0 = guests.reduce((s, g) => s + g.statsRequestsServed, 0);
    const ticks0 = ticksOf(pids);
    const main0 = schedMs(pids, true);
    const all0 = schedMs(pids, false);
    const w0 = performance.now();
    // PSS every 5 s: where V8's GC cycle is decides much of a single reading.
    const pss: number[] = [];
    for (let left = idleSeconds * 1000; left > 0;) {
      const step = Math.min(5000, left);
      await sleep(step);
      left -= step;
      if (left > 0) pss.push(memoryOf(pids).pssKiB);
    }
    const ticks1 = ticksOf(pids);
    const main1 = schedMs(pids, true);
    const all1 = schedMs(pids, false);
    const seconds = (performance.now() - w0) / 1000;
    const served1 = guests.reduce((s, g) => s + g.statsRequestsServed, 0);
    const memory = memoryOf(pids);
    pss.push(memory.pssKiB);
    const idlePssKiB = { min: Math.min(...pss), max: Math.max(...pss), samples: pss.length };

    const perDevice: number[][] = guests.map(() => []);
    const i0 = performance.now();
    await Promise.all(guests.map((g, i) => g.inflate(buffers * PFNS_PER_BUFFER, { onBatch: (ms) => perDevice[i]!.push(ms), updateSize: 'end' })));
    const wallMs = performance.now() - i0;
    await sleep(2000); // deferred discards finish
    const memoryAfterInflate = memoryOf(pids);

    const ticks = ticks1 - ticks0;
    return {
      arm, n, run, processes: pids.length, loadAvg, setupSeconds, memory, idlePssKiB, memoryAfterInflate,
      idle: {
        seconds, ticks, ticksPerSecond: tps(), cpuPercent: (ticks / tps() / seconds) * 100,
        mainThreadMs: main1 - main0, allThreadsMs: all1 - all0, statsServed: served1 - served0,
      },
      inflate: { buffersPerDevice: buffers, pfnsPerBuffer: PFNS_PER_BUFFER, ...inflateFigures(perDevice), wallMs },
    };
  } finally {
    for (const g of guests) g.close();
    await pool(daemons, 8, (d) => d.stop());
  }
}

function writeOutputs(out: string, r: Results): void {
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(out.replace(/\.json$/, '') + '.md', `${markdownTables(r)}\n`);
}

async function main(): Promise<void> {
  if (a.help) {
    console.log(HELP);
    return;
  }
  if (a.from) {
    console.log(markdownTables(JSON.parse(readFileSync(a.from, 'utf8')) as Results));
    return;
  }
  const sizes = a.sizes.split(',').map(Number);
  const arms = a.arms.split(',') as Arm[];
  for (const arm of arms) if (!ARMS.includes(arm)) throw new Error(`unknown arm ${arm} (${ARMS.join(', ')})`);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`--sizes ${a.sizes}: positive integers`);
  const runs = Number(a.runs);
  const idleSeconds = Number(a['idle-seconds']);
  const buffers = Number(a.buffers);
  const results: Results = {
    command: `node dist/bench/scale.js ${process.argv.slice(2).join(' ')}`.trim(),
    startedAt: new Date().toISOString(), finishedAt: '',
    machine: { cpus: cpus().length, memTotalMiB: Math.round(totalmem() / MiB), kernel: release(), node: process.version },
    options: { sizes, arms, runs, idleSeconds, guestRamMiB: GUEST_RAM_MIB, statsIntervalS: STATS_INTERVAL_S, buffersPerDevice: buffers },
    runs: [],
  };
  // Interleaved (run, arm, N): slow phases of a noisy machine spread over every cell.
  for (let run = 1; run <= runs; run++) {
    for (const arm of arms) {
      for (const n of sizes) {
        const r = await oneRun(arm, n, run, idleSeconds, buffers);
        results.runs.push(r);
        console.error(`[scale] run ${run} ${arm} N=${n}: PSS ${(r.memory.pssKiB / 1024).toFixed(1)} MiB, RSS ${(r.memory.rssKiB / 1024).toFixed(1)} MiB, `
          + `idle ${r.idle.cpuPercent.toFixed(2)} % (${r.idle.ticks} ticks, main ${r.idle.mainThreadMs.toFixed(0)} ms), `
          + `inflate p50 ${r.inflate.p50Ms.toFixed(2)} p99 ${r.inflate.p99Ms.toFixed(2)} ms, load ${r.loadAvg.toFixed(1)}`);
        results.finishedAt = new Date().toISOString();
        writeOutputs(a.out, results); // partial results survive an interrupted run
      }
    }
  }
  console.log(markdownTables(results));
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
