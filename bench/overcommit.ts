// The source design's overcommit experiment (seed, section "Testing"), scaled
// to a 2-core TCG machine: two guests in one host memcg whose limit they
// overcommit; vm-down runs bizzy with shrinking chunk counts, vm-up with
// growing ones, starting later; each guest swaps on a scratch disk, as the
// seed's did. Arms: vanilla (stock virtio-balloon-pci, no daemon), device (our
// device, balloon never moved), our daemon with the seed's policy (+ stats /
// message-queue guest pressure), and our daemon's defaults (with and without
// free page reporting); and, for issue 16, arms on one --host daemon for
// both guests (seed, mom, proxmox, ours, ours-reporting; the --policy arms
// need a daemon that has --policy). Writes a JSON of
// raw results, an SVG timeline, and prints the seed-style table.
//
//   node dist/bench/overcommit.js [--arms vanilla,device,auto,auto-stats,auto-msgq,defaults,...] [--runs 3]
//        [--seconds 15] [--delay 15] [--hysteresis 60s] [--guest-swap 256] [--out bench-results/overcommit]
//   node dist/bench/overcommit.js --from DIR/results.json    (tables of an earlier run)
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Memcg } from '../lab/host/memcg.js';
import { ensureSwap, type TempSwap } from '../lab/host/swap.js';
import {
  type BalloonChoice, bizzyResult, createSwapDisk, type GuestImage, guestImage, guestSwap, qemuBinary, repoRoot, runBuildScript, startVm, type Vm,
} from '../lab/vm/index.js';
import { ARMS as POLICY_ARMS, type Arm as PolicyArm, pairedOrder, parseRunsFor, unknownFlags } from './policy/arms.js';
import { daemonHelp, Rig } from './policy/rig.js';
import {
  type ArmRun, type BizzyRun, type GuestRun, markdownTable, procFaults, type Sample, seedTable, summarize, timelineSvg, vmstatSwap,
} from './overcommit/report.js';

const MiB = 2 ** 20;
// Scaling of the seed (2 GiB host, 1.3 GiB guests, 1024..224 chunks, 60 s runs): about 1/2.
// 672 MiB guests overcommit the memcg 1.31 times (the seed's 2.6 / 2 GiB = 1.3), and a lone
// 512-chunk run leaves them enough free memory not to swap, as the seed's vanilla guests did
// not (at 640 MiB the guest kernel swapped ~35 MiB out to keep its THP-raised watermarks).
const LIMIT_MIB = 1024;
const GUEST_MIB = 672;
const DOWN = [512, 412, 312, 212, 112];
const UP = [...DOWN].reverse();
const STATS_OFF = ['--stats-available-percent', '0', '--stats-swap-in', '0', '--stats-major-faults', '0',
  '--stats-stalls', '0', '--stats-direct-reclaim', '0', '--stats-oom-kills', '0'];

/**
 * seedPolicy: the daemon runs with SEED_POLICY; otherwise with its own defaults (and --hysteresis).
 * stockReporting: without a daemon, QEMU's stock device with free-page-reporting=on.
 * host: one --host daemon serves both guests, as bench/policy's arm of that name (its flags, its reporting).
 */
interface Arm { name: string; daemon: boolean; seedPolicy: boolean; daemonArgs: string[]; patched: boolean; stockReporting?: boolean; host?: PolicyArm }
const hostArm = (name: string): Arm => ({ name, daemon: true, seedPolicy: false, daemonArgs: [], patched: false, host: POLICY_ARMS[name] as PolicyArm });
const ARMS: Record<string, Arm> = {
  vanilla: { name: 'vanilla', daemon: false, seedPolicy: false, daemonArgs: [], patched: false },
  // Our device with the daemon attached but never moving the balloon: what the device itself costs.
  device: { name: 'device', daemon: true, seedPolicy: true, daemonArgs: ['--no-auto', ...STATS_OFF], patched: false },
  auto: { name: 'auto', daemon: true, seedPolicy: true, daemonArgs: STATS_OFF, patched: false },
  'auto-stats': { name: 'auto-stats', daemon: true, seedPolicy: true, daemonArgs: [], patched: false },
  'auto-msgq': { name: 'auto-msgq', daemon: true, seedPolicy: true, daemonArgs: STATS_OFF, patched: true },
  // What an operator gets out of the box: our defaults (rate limit 1 s, wait for the guest,
  // stats-derived guest pressure, free page reporting), stock guest.
  defaults: { name: 'defaults', daemon: true, seedPolicy: false, daemonArgs: ['--pressure', 'vmpressure'], patched: false },
  // QEMU's own free page reporting, no daemon: the stock baseline for the defaults arm.
  'vanilla-reporting': { name: 'vanilla-reporting', daemon: false, seedPolicy: false, daemonArgs: [], patched: false, stockReporting: true },
  // Our defaults without free page reporting: what our policy alone does with the balloon.
  'defaults-no-reporting': { name: 'defaults-no-reporting', daemon: true, seedPolicy: false, daemonArgs: ['--pressure', 'vmpressure', '--no-page-reporting'], patched: false },
  // Issue 16: the presets and our policy on one host daemon that sees both guests.
  seed: hostArm('seed'), mom: hostArm('mom'), proxmox: hostArm('proxmox'), ours: hostArm('ours'), 'ours-reporting': hostArm('ours-reporting'),
  // Guests in rounds: the rule with the window's peak and with the last round's (docs/policy-bench/2026-12-02-last-round).
  'ours-window': hostArm('ours-window'), 'ours-last': hostArm('ours-last'), 'ours-last-60s': hostArm('ours-last-60s'),
  'ours-1s': hostArm('ours-1s'), 'ours-last-1s': hostArm('ours-last-1s'),
  // A guest's fresh fall is not spare until a sample 2 s (5 s) later (docs/policy-bench/2026-12-02-fresh-free).
  'ours-fresh2s': hostArm('ours-fresh2s'), 'ours-fresh5s': hostArm('ours-fresh5s'),
  // The defaults less one rule each (docs/policy-bench/2026-12-02-defaults).
  'ours-nofresh': hostArm('ours-nofresh'), 'ours-norebalance': hostArm('ours-norebalance'),
};
// The seed's policy: 32M per event, no rate limit, no waiting for the guest,
// 60 s hysteresis, vmpressure "low" on the experiment's memcg. Free page
// reporting off: as in the seed, the balloon is the only way memory goes back.
let HYSTERESIS = '60s';
let SEED_POLICY = ['--policy', 'seed', '--step', '32M', '--hysteresis', '60s', '--rate-limit', '0', '--no-wait-for-guest',
  '--pressure', 'vmpressure', '--pressure-level', 'low', '--no-page-reporting'];

// Without --arms: the arms from before issue 16 (they run on any build).
const DEFAULT_ARMS = Object.values(ARMS).filter((a) => !a.host).map((a) => a.name);

interface Live { vms: Vm[]; daemons: ChildProcess[]; memcg?: Memcg; swap?: TempSwap; runDir?: string; rig?: Rig }
const live: Live = { vms: [], daemons: [] };

async function cleanup(): Promise<void> {
  await Promise.all(live.vms.splice(0).map((v) => v.shutdown(3000).catch(() => undefined)));
  for (const d of live.daemons.splice(0)) if (d.exitCode === null) d.kill('SIGKILL');
  await live.rig?.stop();
  live.rig = undefined;
  await live.memcg?.remove().catch(() => undefined);
  live.memcg = undefined;
}

function startDaemon(vm: string, memcg: string, arm: Arm, runDir: string): ChildProcess {
  const js = join(repoRoot(), 'dist', 'src', 'main.js');
  const policy = arm.seedPolicy ? SEED_POLICY : ['--hysteresis', HYSTERESIS];
  const d = spawn(process.execPath, [js, '--vm', vm, '--memcg', memcg, ...policy, ...arm.daemonArgs, '--log-level', 'warn'],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, VUB_RUN_DIR: runDir } });
  live.daemons.push(d);
  return d;
}

async function waitFile(path: string, ms: number): Promise<void> {
  const end = performance.now() + ms;
  for (;;) {
    try { readFileSync(path); return; } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return; }
    if (performance.now() > end) throw new Error(`${path} did not appear`);
    await sleep(100);
  }
}

const faults = (pid: number) => procFaults(readFileSync(`/proc/${pid}/stat`, 'utf8'));
const swapNow = () => vmstatSwap(readFileSync('/proc/vmstat', 'utf8'));

/** The guest's swap counters now (pages since boot), or undefined if it reports none in time. */
async function guestSwapNow(vm: Vm) {
  const since = vm.serial.cursor();
  await vm.command('report', 30_000).catch(() => undefined);
  const e = await vm.serial.waitFor((x) => guestSwap(x) !== undefined, 5000, since).catch(() => undefined);
  return e ? guestSwap(e) : undefined;
}

async function runGuest(vm: Vm, name: GuestRun['name'], counts: number[], seconds: number, delay: number, t0: number, log: (s: string) => void) {
  await sleep(delay * 1000);
  let totalRecs = 0, failed = 0;
  const runs: BizzyRun[] = [];
  const now = () => (performance.now() - t0) / 1000;
  for (const n of counts) {
    const since = vm.serial.cursor();
    const start = now();
    // A killed bizzy makes the command fail and prints no result line: one failed run.
    await vm.command(`bizzy ${n} ${seconds}`, 600_000).catch(() => undefined);
    const e = await vm.serial.waitFor((x) => bizzyResult(x) !== undefined, 2000, since).catch(() => undefined);
    const r = e ? bizzyResult(e) : undefined;
    if (r?.ok) totalRecs += r.run.recordsPerSecond; else failed++;
    runs.push({ chunks: n, rps: r?.ok ? r.run.recordsPerSecond : 0, ok: r?.ok === true, start, end: now() });
    log(`  ${name} ${n} chunks: ${r?.ok ? `${r.run.recordsPerSecond} rec/s (alloc ${r.run.allocMs} ms)` : `failed (${r ? r.error : 'no VUB bizzy line: killed?'})`} at ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    if (!r?.ok) log(`    last console lines of ${name}:\n${vm.serial.lastLines(8).map((l) => `      ${l}`).join('\n')}`);
  }
  return { totalRecs, failed, runs, elapsed: (performance.now() - t0) / 1000 };
}

async function oneRun(arm: Arm, run: number, o: { seconds: number; delay: number; guestSwapMiB: number; qemu: string; stock: GuestImage; patched?: GuestImage },
  log: (s: string) => void): Promise<{ result: ArmRun; samples: Sample[] }> {
  const memcg = Memcg.create(`vub-overcommit-${process.pid}-${arm.name}-${run}`, LIMIT_MIB * MiB);
  live.memcg = memcg;
  const runDir = mkdtempSync(join(tmpdir(), 'vub-oc-'));
  const img = arm.patched ? (o.patched as GuestImage) : o.stock;
  const vms: Vm[] = [];
  if (arm.host) {
    // The experiment's time scale applies to every arm: --hysteresis (scaled like the runs) for the host daemon's VMs too.
    live.rig = new Rig(runDir, memcg, { ...arm.host, daemonArgs: [...arm.host.daemonArgs, '--hysteresis', HYSTERESIS] }, o.qemu, img);
    await live.rig.startDaemon(['vm-down', 'vm-up'].map((name) => ({ name, memMiB: GUEST_MIB, swapMiB: o.guestSwapMiB })));
  }
  for (const name of ['vm-down', 'vm-up'] as const) {
    let balloon: BalloonChoice = { kind: 'stock', ...(arm.stockReporting ? { freePageReporting: true } : {}) };
    if (live.rig) {
      balloon = { kind: 'vhost-user', socketPath: live.rig.socket(name), reconnectSeconds: 1 };
    } else if (arm.daemon) {
      startDaemon(name, memcg.path, arm, runDir);
      await waitFile(join(runDir, `${name}.sock`), 10_000);
      balloon = { kind: 'vhost-user', socketPath: join(runDir, `${name}.sock`), reconnectSeconds: 1 };
    }
    // A sparse scratch file as the guest's swap disk (O_DIRECT: no host page cache).
    const swapDisk = o.guestSwapMiB > 0 ? createSwapDisk(join(runDir, `${name}.swap`), o.guestSwapMiB) : undefined;
    const vm = await startVm({ qemu: o.qemu, kernel: img.kernel, initrd: img.initrd, memMiB: GUEST_MIB, balloon,
      ...(swapDisk ? { swapDisk } : {}), guest: { scenario: 'idle', reportSeconds: 5 } });
    memcg.addProcess(vm.pid);
    live.vms.push(vm);
    vms.push(vm);
  }
  await Promise.all(vms.map((v) => v.ready(180_000)));
  await sleep(3000);
  const g0 = await Promise.all(vms.map(guestSwapNow));
  const s0 = swapNow();
  const f0 = vms.map((v) => faults(v.pid));
  const t0 = performance.now();
  const samples: Sample[] = [];
  const names = ['vm-down', 'vm-up'] as const;
  const sampler = setInterval(() => {
    vms.forEach((v, i) => {
      void v.qmp.queryBalloon().then((actual) => {
        samples.push({ t: (performance.now() - t0) / 1000, guest: names[i] as string, balloonMiB: (GUEST_MIB * MiB - actual) / MiB });
      }, () => undefined);
    });
  }, 2000);
  const [down, up] = await Promise.all([
    runGuest(vms[0] as Vm, 'vm-down', DOWN, o.seconds, 0, t0, log),
    runGuest(vms[1] as Vm, 'vm-up', UP, o.seconds, o.delay, t0, log),
  ]);
  clearInterval(sampler);
  const s1 = swapNow();
  const f1 = vms.map((v) => faults(v.pid));
  const g1 = await Promise.all(vms.map(guestSwapNow));
  const guestSwapDelta = (i: number) => {
    const a = g0[i], b = g1[i];
    return o.guestSwapMiB > 0 && a && b ? { guestSwapIn: b.pswpin - a.pswpin, guestSwapOut: b.pswpout - a.pswpout } : {};
  };
  const g = (i: number, r: typeof down): GuestRun => ({
    name: names[i] as GuestRun['name'],
    majorFaults: (f1[i]?.majflt ?? 0) - (f0[i]?.majflt ?? 0),
    minorFaults: (f1[i]?.minflt ?? 0) - (f0[i]?.minflt ?? 0),
    totalRecs: r.totalRecs, elapsedSeconds: r.elapsed, failedRuns: r.failed, ...guestSwapDelta(i), runs: r.runs,
  });
  const history = live.rig ? await live.rig.history([...names]) : undefined;
  const result: ArmRun = { arm: arm.name, run, swapIn: s1.pswpin - s0.pswpin, swapOut: s1.pswpout - s0.pswpout, guests: [g(0, down), g(1, up)],
    ...(history ? { history } : {}) };
  await cleanup();
  rmSync(runDir, { recursive: true, force: true });
  return { result, samples };
}

/** Bad command-line input: printed without a stack. */
class UsageError extends Error {}

const HELP = `Usage: node dist/bench/overcommit.js [options]   (npm run bench:overcommit -- [options])

The seed's overcommit experiment, scaled to this machine (docs/experiment.md).
Needs root (memcg, swap file) and the patched QEMU + guest image (npm run setup).

  --arms LIST        comma-separated: ${Object.keys(ARMS).join(', ')}
                     (default: ${DEFAULT_ARMS.join(',')}; seed, mom, proxmox need a daemon with --policy)
  --runs N           runs per arm, arms interleaved (default 3)
  --seconds S        length of one bizzy run in the guests (default 15)
  --runs-for A=N,... runs of these arms instead of --runs (e.g. vanilla=5,ours=5), paired: run r of every arm before run r + 1
  --delay S          vm-up starts this much later (default 15)
  --hysteresis T     the daemon's guest-pressure hysteresis (default 60s, the seed's)
  --guest-swap MIB   swap disk per guest, as the seed's guests had swap (default 256; 0: none)
  --out DIR          results.json, table.md, timeline*.svg (default bench-results/overcommit)
  --from FILE        only render the tables and plots of an earlier results.json into --out
  --help             this text`;

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(`${HELP}\n`);
    return;
  }
  const { values } = parseArgs({ options: {
    arms: { type: 'string', default: DEFAULT_ARMS.join(',') },
    runs: { type: 'string', default: '3' },
    'runs-for': { type: 'string' },
    seconds: { type: 'string', default: '15' },
    delay: { type: 'string', default: '15' },
    out: { type: 'string', default: 'bench-results/overcommit' },
    // The seed's 60 s hysteresis equals one of its workload runs; scale it with --seconds if wanted.
    hysteresis: { type: 'string', default: '60s' },
    'guest-swap': { type: 'string', default: '256' },
    // Only print the tables of an earlier (possibly partial) results.json.
    from: { type: 'string' },
  } });
  if (values.from) {
    const saved = JSON.parse(readFileSync(values.from, 'utf8')) as { results: ArmRun[]; timelines: Record<string, Sample[]> };
    mkdirSync(values.out as string, { recursive: true });
    writeOutputs(values.out as string, [...new Set(saved.results.map((r) => r.arm))], saved.results, saved.timelines);
    return;
  }
  const arms = (values.arms as string).split(',').map((a) => {
    const arm = ARMS[a];
    if (!arm) throw new UsageError(`unknown arm '${a}' (${Object.keys(ARMS).join(', ')})`);
    return arm;
  });
  const help = daemonHelp();
  for (const a of arms) {
    const missing = a.host ? unknownFlags(a.host.daemonArgs, help) : [];
    if (missing.length) throw new UsageError(`arm ${a.name} needs daemon option(s) ${missing.map((m) => `--${m}`).join(', ')}, which this build lacks (vhost-user-balloon --help)`);
  }
  HYSTERESIS = values.hysteresis as string;
  SEED_POLICY = SEED_POLICY.map((a, i, all) => (all[i - 1] === '--hysteresis' ? HYSTERESIS : a));
  const runs = Number(values.runs), seconds = Number(values.seconds), delay = Number(values.delay);
  const guestSwapMiB = Number(values['guest-swap']);
  for (const [k, v, min] of [['runs', runs, 1], ['seconds', seconds, 1], ['delay', delay, 0], ['guest-swap', guestSwapMiB, 0]] as const) {
    if (!Number.isInteger(v) || v < min) throw new UsageError(`--${k} ${String(values[k])}: expected a whole number >= ${min}`);
  }
  let runsFor: Map<string, number>;
  try { runsFor = parseRunsFor((values['runs-for'] as string | undefined) ?? '', arms.map((a) => a.name)); } catch (e) { throw new UsageError((e as Error).message); }
  const order = pairedOrder(arms, (a) => runsFor.get(a.name) ?? runs);
  const out = values.out as string;
  mkdirSync(out, { recursive: true });
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const onSignal = () => { void cleanup().finally(() => { live.swap?.remove(); process.exit(130); }); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const qemu = await qemuBinary();
  const stock = await guestImage();
  let patched: GuestImage | undefined;
  if (arms.some((a) => a.patched)) {
    const ko = (await runBuildScript('qemu/guest/driver/build.sh')).split('\n').pop() ?? '';
    patched = await guestImage({ balloonKo: ko });
  }
  live.swap = ensureSwap(`/var/tmp/vub-overcommit-${process.pid}.swap`, 2048);
  const results: ArmRun[] = [];
  const timelines: Record<string, Sample[]> = {};
  try {
    for (const { arm, run: r } of order) {
      log(`== ${arm.name} run ${r}/${runsFor.get(arm.name) ?? runs} (${new Date().toISOString()}, load ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]})`);
      const { result, samples } = await oneRun(arm, r, { seconds, delay, guestSwapMiB, qemu, stock, patched }, log);
      results.push(result);
      timelines[`${arm.name}#${r}`] = samples;
      log(`   swap in ${result.swapIn} out ${result.swapOut}; ${JSON.stringify(result.guests)}`);
      writeFileSync(join(out, 'results.json'), JSON.stringify({ scaling: { LIMIT_MIB, GUEST_MIB, DOWN, UP, seconds, delay, guestSwapMiB, hysteresis: values.hysteresis }, results, timelines }, null, 1));
    }
  } finally {
    await cleanup();
    live.swap.remove();
  }
  writeOutputs(out, arms.map((a) => a.name), results, timelines);
}

/** table.md, timeline.svg (one panel per arm, its first run) and timeline-ARM.svg; the tables on stdout. */
function writeOutputs(out: string, arms: string[], results: ArmRun[], timelines: Record<string, Sample[]>): void {
  const summary = summarize(results);
  const svgs = arms.map((a) => timelineSvg(`balloon size, ${a} run 1 (MiB)`, timelines[`${a}#1`] ?? []));
  writeFileSync(join(out, 'timeline.svg'), stackSvgs(svgs, 240));
  arms.forEach((a, i) => writeFileSync(join(out, `timeline-${a}.svg`), svgs[i] ?? ''));
  writeFileSync(join(out, 'table.md'), `${markdownTable(summary)}\n`);
  process.stdout.write(`${seedTable(summary)}\n${markdownTable(summary)}\n`);
}

/** Panels of the same size, one below the other, in one SVG. */
function stackSvgs(svgs: string[], height: number): string {
  const inner = svgs.map((s, i) => `<g transform="translate(0,${i * height})">${s.replace(/^<svg[^>]*>/, '').replace(/<\/svg>$/, '')}</g>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="640" height="${height * svgs.length}" font-family="sans-serif">\n${inner.join('\n')}\n</svg>\n`;
}

main().catch(async (e) => {
  const usage = e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
  process.stderr.write(usage ? `overcommit: ${(e as Error).message} (see --help)\n` : `overcommit: ${(e as Error).stack ?? e}\n`);
  await cleanup();
  live.swap?.remove();
  process.exit(1);
});
