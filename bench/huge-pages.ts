// Huge-page guest RAM (issue 18): how much host memory ballooning gives back
// when guest RAM is on hugetlbfs 2 MiB pages, or on shmem with transparent
// huge pages, with QEMU's stock virtio-balloon-pci and with our device. Each
// run boots a 1 GiB TCG guest, has it touch 850 MiB and free it (so the host
// backs what the balloon takes), balloons 512 MiB through QMP and reads the
// host before and after: the memfd's allocated bytes, HugePages_Free
// (hugetlbfs), ShmemHugePages (THP). Arms run in paired rounds. The -order9
// arms boot our patched guest driver with virtio_balloon.inflate_order=9: it
// inflates from free 2 MiB blocks (qemu/guest/driver/0002-*.patch).
//
//   node dist/bench/huge-pages.js [--arms hugetlb-stock,hugetlb-ours,hugetlb-stock-order9,hugetlb-ours-order9,thp-stock,thp-any,thp-whole]
//        [--runs 3] [--out DIR]
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { type BalloonChoice, type GuestImage, guestImage, qemuBinary, repoRoot, runBuildScript, startVm, type Vm } from '../lab/vm/index.js';
import { memfdBytes, settledMemfdBytes } from './device/measure.js';
import { pairedOrder, parseRunsFor } from './policy/arms.js';

const MiB = 2 ** 20;
const GUEST_MIB = 1024;
const TOUCH_MIB = 850;
const BALLOON_MIB = 512;
const NR = '/proc/sys/vm/nr_hugepages';
const SHMEM_THP = '/sys/kernel/mm/transparent_hugepage/shmem_enabled';

/** The guest's balloon driver: Debian's, or ours with inflate_order=9 (whole 2 MiB blocks where free). */
type GuestDriver = 'stock' | 'order9';
interface Arm { name: string; backing: 'hugetlb' | 'thp'; device: 'stock' | 'ours'; daemonArgs: string[]; guest?: GuestDriver }
const ARMS: Record<string, Arm> = {
  'hugetlb-stock': { name: 'hugetlb-stock', backing: 'hugetlb', device: 'stock', daemonArgs: [] },
  'hugetlb-ours': { name: 'hugetlb-ours', backing: 'hugetlb', device: 'ours', daemonArgs: [] },
  'hugetlb-stock-order9': { name: 'hugetlb-stock-order9', backing: 'hugetlb', device: 'stock', daemonArgs: [], guest: 'order9' },
  'hugetlb-ours-order9': { name: 'hugetlb-ours-order9', backing: 'hugetlb', device: 'ours', daemonArgs: [], guest: 'order9' },
  'thp-stock': { name: 'thp-stock', backing: 'thp', device: 'stock', daemonArgs: [] },
  'thp-any': { name: 'thp-any', backing: 'thp', device: 'ours', daemonArgs: ['--shmem-huge-discard', 'any'] },
  'thp-whole': { name: 'thp-whole', backing: 'thp', device: 'ours', daemonArgs: ['--shmem-huge-discard', 'whole'] },
};

const meminfo = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? NaN);
/** The bracketed choice of a sysfs "a [b] c" file. */
const chosen = (path: string): string => /\[([^\]]+)\]/.exec(readFileSync(path, 'utf8'))?.[1] ?? '';

interface Reading { memfdMiB: number; hugeFree: number; shmemHugeMiB: number }
const read = (vm: Vm): Reading => ({ memfdMiB: memfdBytes(vm.pid) / MiB, hugeFree: meminfo('HugePages_Free'), shmemHugeMiB: meminfo('ShmemHugePages') / 1024 });

interface RunResult {
  arm: string; run: number; before: Reading; after: Reading;
  freedMiB: number; freedPerBallooned: number; hugePagesFreed: number; thpLostMiB: number; inflateMs: number; loadAvg: number;
}

const live: { vm?: Vm; daemon?: ChildProcess; runDir?: string; restore: Array<() => void> } = { restore: [] };

async function startDaemon(args: string[]): Promise<{ socketPath: string }> {
  const runDir = mkdtempSync(join(tmpdir(), 'vub-bench-huge-'));
  live.runDir = runDir;
  const logFd = openSync(join(runDir, 'daemon.log'), 'w');
  live.daemon = spawn(process.execPath, [join(repoRoot(), 'dist', 'src', 'main.js'), '--vm', 'bench', '--pressure', 'none', '--no-page-reporting',
    '--stats-interval', '0', ...args], { stdio: ['ignore', 'ignore', logFd], env: { ...process.env, VUB_RUN_DIR: runDir } });
  closeSync(logFd);
  const socketPath = join(runDir, 'bench.sock');
  for (let i = 0; !existsSync(socketPath); i++) {
    if (i > 200) throw new Error(`the daemon made no socket (${join(runDir, 'daemon.log')})`);
    await sleep(50);
  }
  return { socketPath };
}

async function stopAll(): Promise<void> {
  await live.vm?.shutdown().catch(() => undefined);
  live.vm = undefined;
  if (live.daemon && live.daemon.exitCode === null) {
    live.daemon.kill('SIGTERM');
    await new Promise((r) => live.daemon!.once('exit', r));
  }
  live.daemon = undefined;
  if (live.runDir) rmSync(live.runDir, { recursive: true, force: true });
  live.runDir = undefined;
}

const ORDER9_CMDLINE = ['virtio_balloon.inflate_order=9'];

async function oneRun(arm: Arm, run: number, qemu: string, images: Record<GuestDriver, GuestImage | undefined>, log: (s: string) => void): Promise<RunResult> {
  const img = images[arm.guest ?? 'stock']!;
  writeFileSync(SHMEM_THP, arm.backing === 'thp' ? 'always' : 'never');
  let balloon: BalloonChoice = { kind: 'stock' };
  if (arm.device === 'ours') balloon = { kind: 'vhost-user', socketPath: (await startDaemon(arm.daemonArgs)).socketPath };
  const loadAvg = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  try {
    const vm = await startVm({ qemu, kernel: img.kernel, initrd: img.initrd, memMiB: GUEST_MIB, balloon, ...(arm.backing === 'hugetlb' ? { hugePageMiB: 2 } : {}),
      ...(arm.guest === 'order9' ? { guest: { extra: ORDER9_CMDLINE } } : {}) });
    live.vm = vm;
    await vm.ready(180_000);
    const params = (await vm.serial.waitFor((e) => e.type === 'modules', 1000)).fields.params ?? '';
    if (arm.guest === 'order9' && params !== ORDER9_CMDLINE.join(',')) throw new Error(`${arm.name}: the guest loaded its modules with params '${params}'`);
    await vm.command(`alloc ${TOUCH_MIB}`, 180_000);
    await vm.command('free', 60_000);
    await settledMemfdBytes(vm.pid, 200);
    const before = read(vm);
    const t0 = performance.now();
    await vm.qmp.balloon((GUEST_MIB - BALLOON_MIB) * MiB);
    await vm.waitBalloonActual((GUEST_MIB - BALLOON_MIB) * MiB, 180_000);
    const inflateMs = performance.now() - t0;
    await settledMemfdBytes(vm.pid, 500);
    const after = read(vm);
    const freedMiB = before.memfdMiB - after.memfdMiB;
    const r: RunResult = {
      arm: arm.name, run, before, after, freedMiB, freedPerBallooned: freedMiB / BALLOON_MIB,
      hugePagesFreed: after.hugeFree - before.hugeFree, thpLostMiB: before.shmemHugeMiB - after.shmemHugeMiB, inflateMs, loadAvg,
    };
    log(`   freed ${freedMiB.toFixed(0)} MiB of ${BALLOON_MIB} ballooned; HugePages_Free +${r.hugePagesFreed}; ShmemHugePages ${before.shmemHugeMiB.toFixed(0)} -> ${after.shmemHugeMiB.toFixed(0)} MiB; inflate ${inflateMs.toFixed(0)} ms; load ${loadAvg}`);
    return r;
  } finally {
    await stopAll();
  }
}

const med = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const spread = (xs: number[], f = (x: number) => x.toFixed(0)) => `${f(med(xs))} [${f(Math.min(...xs))}-${f(Math.max(...xs))}]`;

function table(results: RunResult[]): string {
  const rows = ['| arm | runs | host memory freed, MiB (of 512 ballooned) | freed per MiB ballooned | HugePages_Free gained (2 MiB pages) | ShmemHugePages lost, MiB | inflate, ms |',
    '| --- | --- | --- | --- | --- | --- | --- |'];
  for (const arm of [...new Set(results.map((r) => r.arm))]) {
    const rs = results.filter((r) => r.arm === arm);
    const backing = ARMS[arm]!.backing;
    rows.push(`| ${arm} | ${rs.length} | ${spread(rs.map((r) => r.freedMiB))} | ${spread(rs.map((r) => r.freedPerBallooned), (x) => x.toFixed(2))} | ${backing === 'hugetlb' ? spread(rs.map((r) => r.hugePagesFreed)) : '-'} | ${backing === 'thp' ? spread(rs.map((r) => r.thpLostMiB)) : '-'} | ${spread(rs.map((r) => r.inflateMs))} |`);
  }
  return `${rows.join('\n')}\n\nMedians [min-max]. Every run: results.json.\n`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    arms: { type: 'string', default: Object.keys(ARMS).join(',') }, runs: { type: 'string', default: '3' }, 'runs-for': { type: 'string' },
    out: { type: 'string', default: 'bench-results/huge-pages' }, help: { type: 'boolean' },
  } });
  if (values.help) {
    process.stdout.write(`Usage: node dist/bench/huge-pages.js [--arms ${Object.keys(ARMS).join(',')}] [--runs 3] [--runs-for A=N,...] [--out DIR]\n`
      + 'A 1 GiB guest touches 850 MiB, frees it, and 512 MiB are ballooned; host memory freed, per arm. Needs root; sets\n'
      + `${NR} and ${SHMEM_THP} for the run and restores them.\n`);
    return;
  }
  const arms = values.arms!.split(',').map((a) => {
    const arm = ARMS[a];
    if (!arm) throw new Error(`unknown arm '${a}' (${Object.keys(ARMS).join(', ')})`);
    return arm;
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs ${values.runs}: expected a whole number >= 1`);
  const runsFor = parseRunsFor(values['runs-for'] ?? '', arms.map((a) => a.name));
  const out = values.out!;
  mkdirSync(out, { recursive: true });
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const nr0 = readFileSync(NR, 'utf8').trim();
  const thp0 = chosen(SHMEM_THP);
  live.restore.push(() => writeFileSync(NR, nr0), () => writeFileSync(SHMEM_THP, thp0));
  const onSignal = () => { void stopAll().finally(() => { for (const f of live.restore) f(); process.exit(130); }); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  writeFileSync(NR, String(Number(nr0) + GUEST_MIB / 2 + 16));
  if (meminfo('HugePages_Free') < GUEST_MIB / 2) throw new Error(`only ${meminfo('HugePages_Free')} free 2 MiB pages after raising ${NR}`);
  const qemu = await qemuBinary();
  const images: Record<GuestDriver, GuestImage | undefined> = { stock: await guestImage(), order9: undefined };
  if (arms.some((a) => a.guest === 'order9')) images.order9 = await guestImage({ balloonKo: (await runBuildScript('qemu/guest/driver/build.sh')).split('\n').pop() ?? '' });
  const results: RunResult[] = [];
  try {
    for (const { arm, run } of pairedOrder(arms, (a) => runsFor.get(a.name) ?? runs)) {
      log(`== ${arm.name} run ${run} (${new Date().toISOString()})`);
      results.push(await oneRun(arm, run, qemu, images, log));
      writeFileSync(join(out, 'results.json'), JSON.stringify({ guestMiB: GUEST_MIB, touchMiB: TOUCH_MIB, balloonMiB: BALLOON_MIB, results }, null, 1));
    }
  } finally {
    await stopAll();
    for (const f of live.restore) f();
  }
  const t = table(results);
  writeFileSync(join(out, 'table.md'), t);
  process.stdout.write(t);
}

main().catch((err: Error) => {
  process.stderr.write(`huge-pages: ${err.message}\n`);
  for (const f of live.restore) f();
  process.exit(1);
});
