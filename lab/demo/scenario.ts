// The demo: one VM under our daemon in a host memcg that a neighbour
// squeezes. The daemon's policy (by default the host policy: what the memcg
// needs back, in one go) inflates the balloon; then the guest needs its
// memory back and guest pressure deflates it. Measured on the way: how much
// of the neighbour's growth the balloon covered, and the host's swap-out.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus, DecisionRecord } from '../../src/control/status.js';
import { startAllocator, type Allocator } from '../host/allocator.js';
import { Memcg } from '../host/memcg.js';
import { ensureSwap, type TempSwap } from '../host/swap.js';
import { controlSocketPath, vhostSocketPath } from '../../src/paths.js';
import { guestImage, qemuBinary, startVm, type Vm } from '../vm/index.js';

const MiB = 2 ** 20;

export interface DemoOptions {
  vm: string;
  /** Guest RAM. */
  memMiB: number;
  /** Limit of the host memcg that holds QEMU and the neighbour. */
  limitMiB: number;
  /** The neighbour's allocation. */
  neighbourMiB: number;
  /** Guest memory touched and freed at boot: idle memory the host holds. */
  guestTouchMiB: number;
  /** What the guest's workload allocates in the last phase. */
  guestNeedMiB: number;
  /** Upper bound on each phase. */
  phaseSeconds: number;
  /** Extra daemon options (after the demo's own). */
  daemonArgs: string[];
  /** The daemon entry point (dist/src/main.js). */
  daemonJs: string;
  onTick?: (t: Tick) => void;
  say?: (line: string) => void;
}

export type Phase = 'boot' | 'neighbour' | 'guest-needs-memory';

export interface Tick {
  seconds: number;
  phase: Phase;
  targetBytes: number;
  actualBytes: number;
  guestAvailableBytes: number | null;
  memcgUsageBytes: number;
  memcgLimitBytes: number;
  /** The memcg's swap use; null where swap is not accounted. */
  memcgSwapBytes: number | null;
  hostEvents: number;
  guestInPressure: boolean;
  mode: string;
}

/** Host swap during one phase. */
export interface SwapFigures {
  /** Rises of the memcg's swap use summed (sampled every 250 ms: a lower bound); null where not accounted. */
  memcgOutBytes: number | null;
  memcgPeakBytes: number | null;
  /** /proc/vmstat pswpout delta, pages: machine-wide, other jobs' swap included. */
  pswpout: number;
}

export interface DemoResult {
  ticks: Tick[];
  decisions: DecisionRecord[];
  /** Largest target reached while the neighbour squeezed. */
  peakTargetBytes: number;
  /** At the end of the neighbour's phase. */
  neighbour: {
    /** What the neighbour allocated (its full size once it finished). */
    grewBytes: number;
    /** The guest's balloon. */
    balloonBytes: number;
    /** Memcg usage before it + its growth - the limit: what had to come back for it to fit. */
    needBytes: number;
  };
  swap: { neighbour: SwapFigures; guestNeedsMemory: SwapFigures };
}

interface Parts {
  swap?: TempSwap;
  memcg?: Memcg;
  daemon?: ChildProcess;
  ctl?: ControlClient;
  vm?: Vm;
  neighbour?: Allocator;
  swapMeter?: SwapMeter;
}

const pswpout = (): number => Number(/^pswpout (\d+)$/m.exec(readFileSync('/proc/vmstat', 'utf8'))?.[1] ?? 0);

/** The memcg's swap use every 250 ms (its rises summed) and the machine's pswpout, from construction to end(). */
class SwapMeter {
  private readonly pswpout0 = pswpout();
  private last: number | null;
  private out: number | null;
  private peak: number | null;
  private timer: NodeJS.Timeout | undefined;
  private result: SwapFigures | undefined;

  constructor(private readonly memcg: Memcg) {
    this.last = memcg.swapBytes();
    this.out = this.last === null ? null : 0;
    this.peak = this.last;
    this.timer = setInterval(() => this.sample(), 250);
  }

  private sample(): void {
    let now: number | null;
    try {
      now = this.memcg.swapBytes();
    } catch {
      return; // the memcg is going away
    }
    if (now === null || this.last === null || this.out === null) return;
    this.out += Math.max(0, now - this.last);
    this.peak = Math.max(this.peak ?? 0, now);
    this.last = now;
  }

  end(): SwapFigures {
    if (!this.result) {
      clearInterval(this.timer);
      this.sample();
      this.result = { memcgOutBytes: this.out, memcgPeakBytes: this.peak, pswpout: pswpout() - this.pswpout0 };
    }
    return this.result;
  }
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const say = o.say ?? (() => {});
  const p: Parts = {};
  const ticks: Tick[] = [];
  const start = performance.now();
  let phase: Phase = 'boot';
  let ticking: NodeJS.Timeout | undefined;
  try {
    say('building or finding the patched QEMU and the guest image (cached after the first run)');
    const [qemu, img] = [await qemuBinary(), await guestImage()];
    p.swap = ensureSwap(join('/var/tmp', `vub-demo-${process.pid}.swap`), 1024);
    if (p.swap.path) say(`no swap on this host: turned on a temporary 1 GiB swap file ${p.swap.path}`);
    // cgroup v1 memory (vmpressure) where it is mounted, else cgroup2 with memory.max (PSI).
    p.memcg = Memcg.createAny(`vub-demo-${process.pid}`, o.limitMiB * MiB);
    say(`host memcg ${p.memcg.path} (cgroup v${p.memcg.version}, ${p.memcg.version === 1 ? 'vmpressure' : 'PSI'}), limit ${o.limitMiB} MiB, for QEMU and a neighbour`);

    p.daemon = startDaemon(o, p.memcg);
    const ctlPath = controlSocketPath(o.vm);
    p.ctl = await connectWhenUp(ctlPath, p.daemon);
    p.vm = await startVm({
      qemu, kernel: img.kernel, initrd: img.initrd, memMiB: o.memMiB,
      balloon: { kind: 'vhost-user', socketPath: vhostSocketPath(o.vm), reconnectSeconds: 1 },
      guest: { scenario: 'idle', reportSeconds: 1 },
    });
    p.memcg.addProcess(p.vm.pid);
    const ctl = p.ctl;
    const memcg = p.memcg;
    ticking = setInterval(() => {
      void ctl.request<DaemonStatus>({ op: 'status' }).then((s) => {
        const t = tick(s, memcg, phase, (performance.now() - start) / 1000);
        ticks.push(t);
        o.onTick?.(t);
      }, () => { /* the next tick tries again */ });
    }, 1000);

    await p.vm.ready(120_000);
    say(`guest up (QEMU pid ${p.vm.pid}); it touches ${o.guestTouchMiB} MiB and frees it: idle memory the host still holds`);
    await p.vm.command(`alloc ${o.guestTouchMiB}`, 180_000);
    await p.vm.command('free');
    await sleep(2000);

    phase = 'neighbour';
    say(`a neighbour grows to ${o.neighbourMiB} MiB in the same memcg (64 MiB/s): the policy asks the guest for what the memcg needs back`);
    // Automatic ballooning from here: the guest's own touching above is preparation, not the neighbour.
    await ctl.request({ op: 'auto', enabled: true });
    const usageBefore = memcg.usageBytes();
    p.swapMeter = new SwapMeter(memcg);
    p.neighbour = startAllocator(memcg.path, o.neighbourMiB, { stepMiB: 16, pauseMs: 250 });
    let allocated = false;
    p.neighbour.allocated.then(() => { allocated = true; }, () => {});
    // Done when host events stopped for 5 s, or once the neighbour is whole and the balloon has held still for 3 s.
    const still = stillFor(3);
    await settle(ctl, o.phaseSeconds, (s) => (s.targetBytes > 0 && quietFor(s, 5)) || (still(s) && allocated));
    const peakTargetBytes = Math.max(0, ...ticks.map((t) => t.targetBytes));
    const atEnd = await ctl.request<DaemonStatus>({ op: 'status' });
    const grewBytes = allocated ? o.neighbourMiB * MiB : Math.max(0, memcg.usageBytes() - usageBefore);
    const neighbour = { grewBytes, balloonBytes: atEnd.actualBytes, needBytes: Math.max(0, usageBefore + grewBytes - memcg.limitBytes()) };
    const swapNeighbour = p.swapMeter.end();

    phase = 'guest-needs-memory';
    say(`the guest's workload allocates ${o.guestNeedMiB} MiB: guest pressure gives it back its shortfall`);
    p.swapMeter = new SwapMeter(memcg);
    await p.vm.command(`alloc ${o.guestNeedMiB}`, o.phaseSeconds * 1000).catch((e: Error) => say(`guest allocation: ${e.message}`));
    await settle(ctl, o.phaseSeconds, (s) => s.targetBytes < peakTargetBytes && s.actualBytes === s.targetBytes);
    const swapGuest = p.swapMeter.end();

    const decisions = (await ctl.request<{ decisions: DecisionRecord[] }>({ op: 'history', limit: 1000 })).decisions;
    return { ticks, decisions, peakTargetBytes, neighbour, swap: { neighbour: swapNeighbour, guestNeedsMemory: swapGuest } };
  } finally {
    if (ticking) clearInterval(ticking);
    p.swapMeter?.end();
    await teardown(p);
  }
}

function startDaemon(o: DemoOptions, memcg: Memcg): ChildProcess {
  const args = [
    o.daemonJs, '--vm', o.vm, ...memcg.pressureArgs(),
    // Free page reporting would hand the guest's freed memory back by itself;
    // off, the balloon is the only way back, as in the source design.
    '--no-page-reporting', '--stats-interval', '1', '--log-level', 'warn',
    // Off while the guest touches and frees its memory; on when the neighbour starts.
    '--no-auto', ...o.daemonArgs,
  ];
  return spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

function tick(s: DaemonStatus, memcg: Memcg, phase: Phase, seconds: number): Tick {
  const avail = s.stats?.values.available_memory;
  return {
    seconds, phase,
    targetBytes: s.targetBytes, actualBytes: s.actualBytes,
    guestAvailableBytes: avail ?? null,
    memcgUsageBytes: memcg.usageBytes(), memcgLimitBytes: memcg.limitBytes(), memcgSwapBytes: memcg.swapBytes(),
    hostEvents: s.pressure.host.events, guestInPressure: s.pressure.guest.inPressure, mode: s.mode,
  };
}

/** No host pressure event for `seconds`. */
function quietFor(s: DaemonStatus, seconds: number): boolean {
  const last = s.pressure.host.lastEventTime;
  return last !== null && Date.now() - Date.parse(last) > seconds * 1000;
}

/** A predicate: true once target and actual have been equal and unchanged for `seconds`. */
function stillFor(seconds: number): (s: DaemonStatus) => boolean {
  let since = 0;
  let key = '';
  return (s) => {
    const k = `${s.targetBytes}/${s.actualBytes}`;
    if (k !== key || s.targetBytes !== s.actualBytes) {
      key = k;
      since = performance.now();
      return false;
    }
    return performance.now() - since >= seconds * 1000;
  };
}

/** Poll status until done(status) or the phase's time is up. */
async function settle(ctl: ControlClient, seconds: number, done: (s: DaemonStatus) => boolean): Promise<void> {
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    if (done(await ctl.request<DaemonStatus>({ op: 'status' }))) return;
    await sleep(500);
  }
}

/** The daemon's control socket once it answers (a killed earlier run may have left a stale file). */
async function connectWhenUp(path: string, daemon: ChildProcess): Promise<ControlClient> {
  const end = performance.now() + 10_000;
  for (;;) {
    if (daemon.exitCode !== null) throw new Error(`the daemon exited (${daemon.exitCode}); its error is above`);
    try {
      const c = await ControlClient.connect(path, 1000);
      await c.request({ op: 'status' });
      return c;
    } catch (e) {
      if (performance.now() > end) throw new Error(`the daemon did not answer on ${path} within 10 s: ${(e as Error).message}`);
      await sleep(100);
    }
  }
}

async function teardown(p: Parts): Promise<void> {
  p.ctl?.close();
  await p.neighbour?.kill();
  await p.vm?.shutdown();
  if (p.daemon && p.daemon.exitCode === null) {
    const gone = new Promise((r) => p.daemon?.once('exit', r));
    p.daemon.kill('SIGTERM');
    await Promise.race([gone, sleep(5000)]);
    if (p.daemon.exitCode === null) p.daemon.kill('SIGKILL');
  }
  await p.memcg?.remove();
  p.swap?.remove();
}
