// Our vhost-user-balloon device against QEMU's stock virtio-balloon-pci, in
// one run, on the same guest image and size: one 1 GiB TCG guest with the
// stock device, then one with ours (guest RAM a shared memfd in both). For
// each: inflate/deflate 512 MiB timed to query-balloon and the host memory
// freed, the operator's target change round trip, the host-pressure to
// CONFIG_CHANGE latency (ours only: stock QEMU has no pressure source), and
// the daemon's memory and CPU while the guest idles. Prints a table, writes
// the figures as JSON.
//
//   node dist/bench/device-vs-stock.js [--runs 3] [--changes 200] [--idle-seconds 10]
//        [--pressure-samples 200] [--pressure-seconds 180] [--devices stock,ours] [--out bench-results/device]
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { ControlClient } from '../src/control/client.js';
import { PRESSURE_TO_CONFIG_CHANGE_METRIC } from '../src/control/latency.js';
import type { DaemonStatus } from '../src/control/status.js';
import { type Allocator, startAllocator } from '../lab/host/allocator.js';
import { Memcg } from '../lab/host/memcg.js';
import { ensureSwap, type TempSwap } from '../lab/host/swap.js';
import { type BalloonChoice, BALLOON_DEVICE_ID, type GuestImage, guestImage, qemuBinary, repoRoot, startVm, type Vm } from '../lab/vm/index.js';
import { actualReached, idleFigures, memfdBytes, settledMemfdBytes } from './device/measure.js';
import { parseSummary, scrapeUnix } from './device/prom.js';
import {
  type Device, type DeviceResult, type InflateRun, type LatencyFigures, percentile, type PressureFigures, renderTable,
} from './device/report.js';

const MiB = 2 ** 20;
const GUEST_MIB = 1024;
const BALLOON_MIB = 512;
/** Touched and freed by the guest before each inflate, so the host backs the pages the balloon takes. */
const TOUCH_MIB = 800;
/** Operator target changes alternate between 0 and this, small enough for the guest to follow at once. */
const NUDGE_MIB = 4;
/** Host pressure: an allocator of 200 MiB in a 64 MiB memcg (with swap) keeps reclaim, and vmpressure events, going. */
const MEMCG_LIMIT_MIB = 64;
const ALLOCATOR_MIB = 200;
/** Each pressure round takes the target from 0 to this ceiling in --step 32M steps, one sample per step event. */
const PRESSURE_CEILING_MIB = 256;
/** Stock QEMU polls guest stats only when asked; the daemon's default --stats-interval. */
const STATS_SECONDS = 5;
// The policy the brief asks for: every event a 32 MiB step, no rate limit,
// no waiting for the guest, no hysteresis. Free page reporting off, as for
// the stock device: the balloon is the only way memory goes back.
const DAEMON_ARGS = ['--pressure', 'vmpressure', '--step', '32M', '--rate-limit', '0', '--no-wait-for-guest', '--hysteresis', '0',
  '--no-page-reporting', '--stats-interval', String(STATS_SECONDS)];

const HELP = `device-vs-stock: our vhost-user-balloon against QEMU's stock virtio-balloon-pci, same run, same ${GUEST_MIB / 1024} GiB TCG guest

  node dist/bench/device-vs-stock.js [options]      (npm run bench:device -- [options])

Boots one guest with the stock device, then one with ours (daemon + patched QEMU), one after the other, and
prints, side by side: inflate/deflate ${BALLOON_MIB} MiB timed to query-balloon (median and each run), host memory freed
(guest RAM memfd blocks), host pressure -> CONFIG_CHANGE p50/p99 (ours; from the daemon's Summary
${PRESSURE_TO_CONFIG_CHANGE_METRIC}), the operator's target change round trip p50/p99 (ours: control
socket; stock: QMP balloon), and the daemon's RSS and CPU while the guest idles. Needs root (a cgroup v1 memcg
under /sys/fs/cgroup/memory, a temporary swap file when there is no swap). On a shared machine run it under a lock.

Options:
  --runs N               inflate/deflate repetitions per device (default 3)
  --changes N            operator target changes timed per device (default 200)
  --idle-seconds S       window for the idle CPU reading (default 10)
  --pressure-samples N   stop the pressure phase once the daemon timed this many events (default 200)
  --pressure-seconds S   ... or after this long (default 180)
  --devices LIST         stock,ours (default), or one of them
  --daemon-nice N        run the daemon at this nice value (default 0; --daemon-nice=-10 shows what CPU contention adds)
  --daemon-fifo N        run the daemon under chrt -f N, SCHED_FIFO (default 0: off; its discard thread stays normal)
  --out DIR              results.json, table.txt and daemon.log go here (default bench-results/device)
  -h, --help             this text
`;

interface Options {
  runs: number;
  changes: number;
  idleSeconds: number;
  pressureSamples: number;
  pressureSeconds: number;
  devices: Device[];
  daemonNice: number;
  daemonFifo: number;
  out: string;
}

class UsageError extends Error {}

function parseOptions(argv: string[]): Options | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        runs: { type: 'string', default: '3' },
        changes: { type: 'string', default: '200' },
        'idle-seconds': { type: 'string', default: '10' },
        'pressure-samples': { type: 'string', default: '200' },
        'pressure-seconds': { type: 'string', default: '180' },
        devices: { type: 'string', default: 'stock,ours' },
        'daemon-nice': { type: 'string', default: '0' },
        'daemon-fifo': { type: 'string', default: '0' },
        out: { type: 'string', default: 'bench-results/device' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    // node:util's messages suggest "--" for positionals, which this script has none of.
    const e = err as NodeJS.ErrnoException;
    const m = /'([^']+)'/.exec(e.message);
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`unknown option ${m?.[1] ?? ''}`);
    if (e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new UsageError(`unexpected argument ${m?.[1] ?? ''}: this script takes options only`);
    // "--daemon-nice -10": node:util reads -10 as an option.
    if (/ambiguous/.test(e.message)) throw new UsageError(`${m?.[1] ?? 'an option'}: for a value starting with "-" write --option=VALUE, e.g. --daemon-nice=-10`);
    throw new UsageError(e.message.split('.')[0] ?? e.message);
  }
  if (values.help) return 'help';
  const count = (name: string, text: string, min: number): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} ${text}: expected a whole number >= ${min}`);
    return n;
  };
  const devices = values.devices.split(',').map((d) => d.trim());
  if (devices.length === 0 || devices.some((d) => d !== 'ours' && d !== 'stock') || new Set(devices).size !== devices.length) {
    throw new UsageError(`--devices ${values.devices}: expected stock, ours, or both separated by a comma`);
  }
  const nice = Number(values['daemon-nice']);
  if (!Number.isInteger(nice) || nice < -20 || nice > 19) throw new UsageError(`--daemon-nice ${values['daemon-nice']}: expected a whole number from -20 to 19`);
  const fifo = Number(values['daemon-fifo']);
  if (!Number.isInteger(fifo) || fifo < 0 || fifo > 99) throw new UsageError(`--daemon-fifo ${values['daemon-fifo']}: expected a priority from 1 to 99 (0: off)`);
  if (fifo && nice) throw new UsageError('--daemon-fifo and --daemon-nice: choose one (nice does not apply under SCHED_FIFO)');
  return {
    daemonNice: nice,
    daemonFifo: fifo,
    runs: count('runs', values.runs, 1),
    changes: count('changes', values.changes, 1),
    idleSeconds: count('idle-seconds', values['idle-seconds'], 1),
    pressureSamples: count('pressure-samples', values['pressure-samples'], 1),
    pressureSeconds: count('pressure-seconds', values['pressure-seconds'], 1),
    devices: devices as Device[],
    out: values.out,
  };
}

const log = (s: string) => process.stderr.write(`${s}\n`);

/** Which code was measured: the commit and the files changed on top of it. */
function treeState(): { commit: string; changed: string[] } | null {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: repoRoot(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return { commit: git('rev-parse', 'HEAD').trim(), changed: git('status', '--short', '--untracked-files=no').split('\n').filter(Boolean) };
  } catch {
    return null;
  }
}

/** Everything to undo on the way out, whatever happened. */
const live: { vm?: Vm; daemon?: ChildProcess; ctl?: ControlClient; allocator?: Allocator; memcg?: Memcg; swap?: TempSwap; runDir?: string } = {};

async function cleanup(): Promise<void> {
  await live.allocator?.kill().catch(() => undefined);
  live.ctl?.close();
  await live.vm?.shutdown(3000).catch(() => undefined);
  if (live.daemon && live.daemon.exitCode === null && live.daemon.signalCode === null) {
    const d = live.daemon;
    const gone = new Promise((r) => d.once('exit', r));
    d.kill('SIGTERM');
    await Promise.race([gone, sleep(3000)]);
    if (d.exitCode === null && d.signalCode === null) d.kill('SIGKILL');
  }
  await live.memcg?.remove().catch(() => undefined);
  if (live.runDir) rmSync(live.runDir, { recursive: true, force: true });
  for (const k of ['allocator', 'ctl', 'vm', 'daemon', 'memcg', 'runDir'] as const) delete live[k];
}

/** The device under test, driven the way an operator drives it. */
interface Subject {
  device: Device;
  vm: Vm;
  /** Ask for a balloon of `bytes` (ours: control socket set-target; stock: QMP balloon). */
  setBalloon(bytes: number): Promise<void>;
  /** Bytes the device has discarded so far (ours: the daemon's counter); null when it discards before the guest goes on (stock). */
  discarded(): Promise<number | null>;
  daemonPid: number | null;
}

async function inflateRuns(s: Subject, runs: number): Promise<InflateRun[]> {
  const out: InflateRun[] = [];
  const full = GUEST_MIB * MiB;
  for (let run = 1; run <= runs; run++) {
    await s.vm.command(`alloc ${TOUCH_MIB}`, 180_000);
    await s.vm.command('free', 60_000);
    await sleep(1000);
    const memfdBefore = memfdBytes(s.vm.pid);
    const rssBefore = await s.vm.rssShmemKiB();
    const discardedBefore = await s.discarded();
    let t0 = performance.now();
    await s.setBalloon(BALLOON_MIB * MiB);
    const inflateSeconds = ((await actualReached(s.vm.qmp, full - BALLOON_MIB * MiB)) - t0) / 1000;
    // Ours acknowledges at once and discards on a thread shortly after: wait
    // for its count, then for the blocks to settle. Stock QEMU has discarded
    // every page before the guest writes `actual`.
    if (discardedBefore !== null) {
      await waitFor(s.discarded, (d) => (d ?? 0) - discardedBefore >= BALLOON_MIB * MiB, 15_000, 'discard of the inflated pages', 50);
    }
    const memfdAfter = await settledMemfdBytes(s.vm.pid);
    const rssAfter = await s.vm.rssShmemKiB();
    t0 = performance.now();
    await s.setBalloon(0);
    const deflateSeconds = ((await actualReached(s.vm.qmp, full)) - t0) / 1000;
    const r: InflateRun = {
      run, inflateSeconds, deflateSeconds, memfdBeforeBytes: memfdBefore, memfdAfterBytes: memfdAfter,
      freedBytes: memfdBefore - memfdAfter, rssShmemBeforeKiB: rssBefore, rssShmemAfterKiB: rssAfter,
    };
    log(`  ${s.device} run ${run}: inflate ${inflateSeconds.toFixed(2)} s, deflate ${deflateSeconds.toFixed(2)} s, `
      + `memfd ${Math.round(memfdBefore / MiB)} -> ${Math.round(memfdAfter / MiB)} MiB, RssShmem ${Math.round(rssBefore / 1024)} -> ${Math.round(rssAfter / 1024)} MiB`);
    out.push(r);
  }
  return out;
}

async function targetChanges(s: Subject, n: number): Promise<LatencyFigures> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await s.setBalloon(i % 2 === 0 ? NUDGE_MIB * MiB : 0);
    times.push((performance.now() - t0) / 1000);
    await sleep(10); // let the guest's interrupt and the small inflate/deflate run, as between operator commands
  }
  await s.setBalloon(0);
  await actualReached(s.vm.qmp, GUEST_MIB * MiB);
  const sorted = times.sort((a, b) => a - b);
  return {
    what: s.device === 'ours' ? 'control socket set-target request to reply' : 'QMP balloon command to return',
    samples: n, p50Seconds: percentile(sorted, 0.5), p99Seconds: percentile(sorted, 0.99),
  };
}

async function bootStock(qemu: string, img: GuestImage): Promise<Subject> {
  const vm = await startVm({ qemu, kernel: img.kernel, initrd: img.initrd, memMiB: GUEST_MIB,
    balloon: { kind: 'stock', deflateOnOom: true }, guest: { scenario: 'idle', reportSeconds: 5 } });
  live.vm = vm;
  await vm.ready(180_000);
  // The daemon asks for stats every 5 s; let QEMU do the same.
  await vm.qmp.execute('qom-set', { path: `/machine/peripheral/${BALLOON_DEVICE_ID}`, property: 'guest-stats-polling-interval', value: STATS_SECONDS });
  return { device: 'stock', vm, daemonPid: null, setBalloon: (bytes) => vm.qmp.balloon(GUEST_MIB * MiB - bytes), discarded: async () => null };
}

async function waitFor<T>(read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number, what: string, pollMs = 20): Promise<T> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (performance.now() > end) throw new Error(`no ${what} within ${timeoutMs} ms`);
    await sleep(pollMs);
  }
}

async function bootOurs(qemu: string, img: GuestImage, out: string, nice: number, fifo: number): Promise<Subject & { ctl: ControlClient; metricsSock: string; memcg: Memcg }> {
  const memcg = Memcg.create(`vub-bench-device-${process.pid}`, MEMCG_LIMIT_MIB * MiB);
  live.memcg = memcg;
  const runDir = mkdtempSync(join(tmpdir(), 'vub-bench-device-'));
  live.runDir = runDir;
  const metricsSock = join(runDir, 'metrics.sock');
  const logFd = openSync(join(out, 'daemon.log'), 'w');
  const argv = [process.execPath, join(repoRoot(), 'dist', 'src', 'main.js'), '--vm', 'bench', '--memcg', memcg.path, ...DAEMON_ARGS,
    '--metrics-listen', `unix:${metricsSock}`, '--log-level', 'info'];
  // nice(1) and chrt(1) exec the daemon in place: same pid, every thread at that priority.
  const [cmd, ...args] = fifo ? ['chrt', '-f', String(fifo), ...argv] : nice === 0 ? argv : ['nice', '-n', String(nice), ...argv];
  const daemon = spawn(cmd as string, args, { stdio: ['ignore', 'ignore', logFd], env: { ...process.env, VUB_RUN_DIR: runDir } });
  closeSync(logFd);
  live.daemon = daemon;
  const socketPath = join(runDir, 'bench.sock');
  await waitFor(async () => existsSync(socketPath) && existsSync(metricsSock), Boolean, 10_000, `daemon sockets (see ${out}/daemon.log)`);
  const balloon: BalloonChoice = { kind: 'vhost-user', socketPath };
  const vm = await startVm({ qemu, kernel: img.kernel, initrd: img.initrd, memMiB: GUEST_MIB, balloon, guest: { scenario: 'idle', reportSeconds: 5 } });
  live.vm = vm;
  await vm.ready(180_000);
  const ctl = await ControlClient.connect(join(runDir, 'bench.ctl'));
  live.ctl = ctl;
  await waitFor(() => ctl.request<DaemonStatus>({ op: 'status' }), (st) => st.connected, 10_000, 'frontend connection');
  const setBalloon = async (bytes: number) => { await ctl.request({ op: 'set-target', value: `${bytes / MiB}M`, owner: 'bench' }); };
  const discarded = async () => (await ctl.request<DaemonStatus>({ op: 'status' })).counters.discardedBytes;
  return { device: 'ours', vm, daemonPid: daemon.pid as number, setBalloon, discarded, ctl, metricsSock, memcg };
}

/**
 * Rounds of: hold the target at 0 until the guest has deflated, release it to
 * the policy, and let the allocator's vmpressure events step it up to the
 * ceiling. Each event that moves the target is one sample in the daemon.
 */
async function pressurePhase(o: Options, s: Awaited<ReturnType<typeof bootOurs>>): Promise<PressureFigures> {
  const { ctl } = s;
  const status = () => ctl.request<DaemonStatus>({ op: 'status' });
  const ceiling = PRESSURE_CEILING_MIB * MiB;
  await ctl.request({ op: 'tune', params: { maxBalloonBytes: ceiling } });
  const keepAllocating = () => {
    const a = live.allocator;
    if (a && a.child.exitCode === null && a.child.signalCode === null) return;
    if (a) log('  the allocator exited (OOM kill?): starting another');
    live.allocator = startAllocator(s.memcg.path, ALLOCATOR_MIB);
  };
  const t0 = performance.now();
  let rounds = 0;
  let st = await status();
  while (st.pressure.host.toConfigChange.count < o.pressureSamples && performance.now() - t0 < o.pressureSeconds * 1000) {
    rounds++;
    await s.setBalloon(0);
    keepAllocating();
    await actualReached(s.vm.qmp, GUEST_MIB * MiB);
    await ctl.request({ op: 'set-target', value: 'release' });
    st = await waitFor(status, (x) => x.targetBytes >= ceiling, 30_000, `pressure steps to ${PRESSURE_CEILING_MIB} MiB in round ${rounds} (no vmpressure events?)`,
      100); // status requests share the daemon's event loop with the events being timed: not too often
    log(`  pressure round ${rounds}: ${st.pressure.host.toConfigChange.count} events timed, ${st.pressure.host.events} host events`);
  }
  const seconds = (performance.now() - t0) / 1000;
  await live.allocator?.kill();
  delete live.allocator;
  const m = parseSummary(await scrapeUnix(s.metricsSock), PRESSURE_TO_CONFIG_CHANGE_METRIC);
  if (!m) throw new Error(`the daemon's metrics have no ${PRESSURE_TO_CONFIG_CHANGE_METRIC}`);
  st = await status();
  // Leave it as the other phases found it: balloon empty.
  await s.setBalloon(0);
  await actualReached(s.vm.qmp, GUEST_MIB * MiB);
  return {
    samples: m.count, sumSeconds: m.sum,
    p50Seconds: m.quantiles['0.5'] ?? Number.NaN, p90Seconds: m.quantiles['0.9'] ?? Number.NaN, p99Seconds: m.quantiles['0.99'] ?? Number.NaN,
    status: st.pressure.host.toConfigChange, hostEvents: st.pressure.host.events, rounds, seconds,
  };
}

async function idle(s: Subject, seconds: number): Promise<DeviceResult['idle']> {
  await sleep(3000); // the last target change settles
  const pids = s.daemonPid === null ? [s.vm.pid] : [s.daemonPid, s.vm.pid];
  const figures = await idleFigures(pids, seconds);
  return s.daemonPid === null
    ? { seconds, daemon: null, qemu: figures[0]! }
    : { seconds, daemon: figures[0]!, qemu: figures[1]! };
}

async function benchDevice(device: Device, o: Options, qemu: string, img: GuestImage): Promise<DeviceResult> {
  log(`== ${device}: booting a ${GUEST_MIB} MiB guest`);
  try {
    if (device === 'stock') {
      const s = await bootStock(qemu, img);
      const runs = await inflateRuns(s, o.runs);
      log(`  ${o.changes} target changes`);
      const targetChange = await targetChanges(s, o.changes);
      log(`  idle ${o.idleSeconds} s`);
      return { device, runs, targetChange, pressure: null, idle: await idle(s, o.idleSeconds) };
    }
    const s = await bootOurs(qemu, img, o.out, o.daemonNice, o.daemonFifo);
    const runs = await inflateRuns(s, o.runs);
    log(`  ${o.changes} target changes`);
    const targetChange = await targetChanges(s, o.changes);
    log(`  idle ${o.idleSeconds} s`);
    const idleFigs = await idle(s, o.idleSeconds);
    log(`  host pressure: up to ${o.pressureSamples} timed events or ${o.pressureSeconds} s`);
    live.swap ??= ensureSwap(`/var/tmp/vub-bench-device-${process.pid}.swap`, 1024);
    const pressure = await pressurePhase(o, s);
    return { device, runs, targetChange, pressure, idle: idleFigs };
  } finally {
    await cleanup();
  }
}

async function main(argv: string[]): Promise<number> {
  let o: Options | 'help';
  try {
    o = parseOptions(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`device-vs-stock: ${err.message}\nRun with --help for the options.\n`);
    return 2;
  }
  if (o === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  mkdirSync(o.out, { recursive: true });
  const onSignal = () => { void cleanup().finally(() => { live.swap?.remove(); process.exit(130); }); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const qemu = await qemuBinary();
  const img = await guestImage();
  const results: Partial<Record<Device, DeviceResult>> = {};
  try {
    for (const d of o.devices) results[d] = await benchDevice(d, o, qemu, img);
  } finally {
    live.swap?.remove();
  }
  const table = renderTable({ guestMiB: GUEST_MIB, balloonMiB: BALLOON_MIB, runs: o.runs, idleSeconds: o.idleSeconds, daemonNice: o.daemonNice, daemonFifo: o.daemonFifo,
    ours: results.ours ?? null, stock: results.stock ?? null });
  const config = { guestMiB: GUEST_MIB, balloonMiB: BALLOON_MIB, touchMiB: TOUCH_MIB, nudgeMiB: NUDGE_MIB, memcgLimitMiB: MEMCG_LIMIT_MIB,
    allocatorMiB: ALLOCATOR_MIB, pressureCeilingMiB: PRESSURE_CEILING_MIB, daemonArgs: DAEMON_ARGS, statsSeconds: STATS_SECONDS, ...o };
  writeFileSync(join(o.out, 'results.json'), `${JSON.stringify({ time: new Date().toISOString(), tree: treeState(), config, results, table }, null, 1)}\n`);
  writeFileSync(join(o.out, 'table.txt'), `${table}\n`);
  process.stdout.write(`${table}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  async (err: unknown) => {
    process.stderr.write(`device-vs-stock: ${(err as Error).stack ?? String(err)}\n`);
    await cleanup();
    live.swap?.remove();
    process.exit(1);
  },
);
