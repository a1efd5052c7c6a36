// The I/O of the policy benchmark: one host daemon for the run's VMs, the
// guests, the memcg's counters, the guests' own counters, and a sampler of
// balloon sizes and memcg swap.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { DEVICE_OPTIONS } from '../../src/options/device.js';
import type { Memcg } from '../../lab/host/memcg.js';
import {
  type BalloonChoice, createSwapDisk, type GuestImage, guestOomKills, guestSwap, memCacheKiB, memInfo, repoRoot, startVm, type Vm,
} from '../../lab/vm/index.js';
import { vmstatSwap } from '../overcommit/report.js';
import { type Arm, type ConfigValue, type OptionTable, splitDaemonArgs } from './arms.js';
import type { Sample } from './metrics.js';

const MiB = 2 ** 20;
const daemonJs = (): string => join(repoRoot(), 'dist', 'src', 'main.js');

export const OPTION_TABLE: OptionTable = {
  names: new Set(Object.keys(DEVICE_OPTIONS)),
  booleans: new Set(Object.entries(DEVICE_OPTIONS).filter(([, o]) => (o as { type?: string }).type === 'boolean').map(([k]) => k)),
};

/** The daemon's --help (which flags this build has). */
export const daemonHelp = (): string => execFileSync(process.execPath, [daemonJs(), '--help'], { encoding: 'utf8' });

export interface GuestSpec {
  name: string;
  memMiB: number;
  /** Guest swap disk (0: none). */
  swapMiB: number;
  /** Per-VM daemon flags (e.g. ['--weight', '4']). */
  daemonArgs?: string[];
  /** Raw data disks (MiB each), sparse files. */
  dataDiskMiB?: number[];
}

export interface Guest { spec: GuestSpec; vm: Vm }

/** What a run started, for cleanup. */
export class Rig {
  readonly guests: Guest[] = [];
  daemon: ChildProcess | undefined;
  ctl: ControlClient | undefined;
  constructor(readonly dir: string, readonly memcg: Memcg, readonly arm: Arm, readonly qemu: string, readonly img: GuestImage) {}

  /** Our arm: one `--host` daemon, each VM from a config file (device options of the arm + the VM's own flags). */
  async startDaemon(specs: GuestSpec[]): Promise<void> {
    if (this.arm.balloon !== 'ours') return;
    const conf = join(this.dir, 'conf');
    mkdirSync(conf, { recursive: true });
    const { hostArgs: host, vmOptions: armOptions } = splitDaemonArgs(this.arm.daemonArgs, OPTION_TABLE);
    for (const s of specs) {
      const own = splitDaemonArgs(s.daemonArgs ?? [], OPTION_TABLE);
      if (own.hostArgs.length) throw new Error(`${s.name}: ${own.hostArgs.join(' ')} is not a per-VM option of this daemon`);
      const options: Record<string, ConfigValue> = {
        ...splitDaemonArgs(this.memcg.pressureArgs(), OPTION_TABLE).vmOptions,
        'page-reporting': this.arm.freePageReporting,
        ...armOptions,
        ...own.vmOptions,
        'socket-path': this.socket(s.name),
      };
      writeFileSync(join(conf, `${s.name}.json`), `${JSON.stringify(options, null, 1)}\n`);
    }
    const args = [daemonJs(), '--host', '--config-dir', conf, '--state-dir', join(this.dir, 'state'),
      '--control-socket', join(this.dir, 'control.sock'), '--log-level', 'warn', ...host];
    this.daemon = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, VUB_RUN_DIR: this.dir } });
    const end = performance.now() + 15_000;
    while (!specs.every((s) => existsSync(this.socket(s.name))) || !existsSync(join(this.dir, 'control.sock'))) {
      if (this.daemon.exitCode !== null) throw new Error(`the daemon exited (${this.daemon.exitCode}); its error is above`);
      if (performance.now() > end) throw new Error('the daemon did not open its sockets within 15 s');
      await sleep(100);
    }
    this.ctl = await ControlClient.connect(join(this.dir, 'control.sock'));
  }

  socket(vm: string): string {
    return join(this.dir, `${vm}.sock`);
  }

  /** Boots one guest in the memcg (QEMU joins it at once, before it touches guest RAM). */
  async startGuest(s: GuestSpec): Promise<Guest> {
    const balloon: BalloonChoice = this.arm.balloon === 'ours'
      ? { kind: 'vhost-user', socketPath: this.socket(s.name), reconnectSeconds: 1 }
      : { kind: 'stock', ...(this.arm.freePageReporting ? { freePageReporting: true } : {}) };
    const swapDisk = s.swapMiB > 0 ? createSwapDisk(join(this.dir, `${s.name}.swap`), s.swapMiB) : undefined;
    const dataDisks = (s.dataDiskMiB ?? []).map((mib, i) => createSwapDisk(join(this.dir, `${s.name}.data${i}`), mib));
    const vm = await startVm({ qemu: this.qemu, kernel: this.img.kernel, initrd: this.img.initrd, memMiB: s.memMiB, balloon,
      ...(swapDisk ? { swapDisk } : {}), dataDisks, guest: { scenario: 'idle', reportSeconds: 2 } });
    this.memcg.addProcess(vm.pid);
    const g = { spec: s, vm };
    this.guests.push(g);
    return g;
  }

  async daemonStatus(vm: string): Promise<DaemonStatus | undefined> {
    return this.ctl?.request<DaemonStatus>({ op: 'status', vm }).catch(() => undefined);
  }

  /** The daemon's decisions (ours only): host-wide ones and each VM's own, as `balloonctl history` shows them. */
  async history(vms: string[], limit = 300): Promise<{ host: unknown[]; vms: Record<string, unknown[]> } | undefined> {
    const c = this.ctl;
    if (!c) return undefined;
    const host = await c.request<{ host?: unknown[] }>({ op: 'history', limit }).catch(() => undefined);
    const own: Record<string, unknown[]> = {};
    for (const vm of vms) own[vm] = (await c.request<{ decisions?: unknown[] }>({ op: 'history', vm, limit }).catch(() => undefined))?.decisions ?? [];
    return { host: host?.host ?? [], vms: own };
  }

  async stop(): Promise<void> {
    this.ctl?.close();
    await Promise.all(this.guests.splice(0).map((g) => g.vm.shutdown(3000).catch(() => undefined)));
    const d = this.daemon;
    if (d && d.exitCode === null) {
      const gone = new Promise((r) => d.once('exit', r));
      d.kill('SIGTERM');
      await Promise.race([gone, sleep(5000)]);
      if (d.exitCode === null) d.kill('SIGKILL');
    }
  }
}

// --- counters ------------------------------------------------------------------------

export const hostSwap = () => vmstatSwap(readFileSync('/proc/vmstat', 'utf8'));

const eventsFile = (m: Memcg): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const l of m.read('memory.events').split('\n')) { const [k, v] = l.split(' '); if (k && v) out[k] = Number(v); }
  return out;
};
/** Times the memcg hit its limit (v1 memory.failcnt; cgroup2 memory.events max). */
export const limitHits = (m: Memcg): number => (m.version === 1 ? Number(m.read('memory.failcnt')) : (eventsFile(m).max ?? 0));
/** The memcg's own swap use, MiB (v1 memory.stat swap, with swap accounting; cgroup2 memory.swap.current). */
export const memcgSwapMiB = (m: Memcg): number => (m.version === 1 ? (m.stat().swap ?? 0) : Number(m.read('memory.swap.current'))) / MiB;
export const memcgOomKills = (m: Memcg): number => {
  if (m.version === 2) return eventsFile(m).oom_kill ?? 0;
  const l = /^oom_kill (\d+)$/m.exec(m.read('memory.oom_control'));
  return l ? Number(l[1]) : 0;
};
/** Major faults charged to the memcg (swap-ins of guest RAM among them). */
export const memcgMajorFaults = (m: Memcg): number => (m.version === 1 ? (m.stat().pgmajfault ?? 0) : (m.stat().pgmajfault ?? 0));
export const usageMiB = (m: Memcg): number => m.usageBytes() / MiB;

export interface GuestReport { availMiB: number; totalMiB: number; cacheMiB: number | null; pswpout: number | null; oomKills: number | null }

/** The guest's meminfo and vmstat now, from a `report` command; undefined when none came in time. */
export async function guestReport(vm: Vm, timeoutMs = 30_000): Promise<GuestReport | undefined> {
  const since = vm.serial.cursor();
  await vm.command('report', timeoutMs).catch(() => undefined);
  const mi = await vm.serial.waitFor((e) => memInfo(e) !== undefined, 5000, since).catch(() => undefined);
  const vs = await vm.serial.waitFor((e) => guestSwap(e) !== undefined, 5000, since).catch(() => undefined);
  const i = mi ? memInfo(mi) : undefined;
  if (!i) return undefined;
  const c = mi ? memCacheKiB(mi) : undefined;
  return {
    availMiB: i.MemAvailable / 1024, totalMiB: i.MemTotal / 1024,
    cacheMiB: c ? (c.buffers + c.cached) / 1024 : null,
    pswpout: vs ? (guestSwap(vs)?.pswpout ?? null) : null,
    oomKills: vs ? (guestOomKills(vs) ?? null) : null,
  };
}

export const rssShmemMiB = async (vm: Vm): Promise<number> => (await vm.rssShmemKiB().catch(() => 0)) / 1024;

/**
 * Every periodMs: each guest's balloon (QMP query-balloon), the memcg's swap,
 * and the first limit hit. t in seconds since start().
 */
export class Sampler {
  readonly samples: Sample[] = [];
  readonly peak = new Map<string, number>();
  firstEventS: number | null = null;
  swapPeakMiB = 0;
  /** Sum of the rises of the memcg's swap use between samples: its swap-out, less what came back within one period. */
  swapOutMiB = 0;
  private lastSwap: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private t0 = 0;
  private hits0 = 0;
  private busy = false;

  constructor(private readonly memcg: Memcg, private readonly guests: Guest[], private readonly periodMs = 500) {}

  start(): void {
    this.t0 = performance.now();
    this.hits0 = limitHits(this.memcg);
    this.swapTick();
    this.timer = setInterval(() => { void this.tick(); }, this.periodMs);
  }

  now(): number {
    return (performance.now() - this.t0) / 1000;
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const t = this.now();
      if (this.firstEventS === null && limitHits(this.memcg) > this.hits0) this.firstEventS = t;
      const swap = this.swapTick();
      this.samples.push({ t, guest: 'memcg swap', balloonMiB: swap });
      // Free below the limit: whether the balloons' discards reached the memcg, and when.
      this.samples.push({ t, guest: 'memcg free', balloonMiB: Math.max(0, this.memcg.limitBytes() / MiB - usageMiB(this.memcg)) });
      await Promise.all(this.guests.map(async (g) => {
        const actual = await g.vm.qmp.queryBalloon().catch(() => undefined);
        if (actual === undefined) return;
        const b = g.spec.memMiB - actual / MiB;
        this.peak.set(g.spec.name, Math.max(this.peak.get(g.spec.name) ?? 0, b));
        this.samples.push({ t: this.now(), guest: g.spec.name, balloonMiB: b });
      }));
    } catch { /* a VM going away at the end */ } finally {
      this.busy = false;
    }
  }

  /** Reads the memcg's swap use and adds its rise to swapOutMiB. */
  swapTick(): number {
    const swap = memcgSwapMiB(this.memcg);
    if (this.lastSwap !== undefined) this.swapOutMiB += Math.max(0, swap - this.lastSwap);
    this.lastSwap = swap;
    this.swapPeakMiB = Math.max(this.swapPeakMiB, swap);
    return swap;
  }

  /** Last balloon sample of a guest. */
  last(name: string): number {
    for (let i = this.samples.length - 1; i >= 0; i--) if (this.samples[i]?.guest === name) return this.samples[i]?.balloonMiB ?? 0;
    return 0;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
