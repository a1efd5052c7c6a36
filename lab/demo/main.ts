#!/usr/bin/env node
// `npm run demo`: the main job on a built-in default. One VM under our daemon
// in a host memcg; a neighbour squeezes it; the balloon moves by itself. At
// the end: how much of the neighbour's growth the balloon covered, and the
// host's swap-out.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { runDemo, type DemoResult, type SwapFigures, type Tick } from './scenario.js';

const mib = (b: number | null): string => (b === null ? '?' : `${Math.round(b / 2 ** 20)}`);

function line(t: Tick): string {
  return `${t.seconds.toFixed(0).padStart(4)}s ${t.phase.padEnd(18)} target ${mib(t.targetBytes).padStart(4)} MiB`
    + `  actual ${mib(t.actualBytes).padStart(4)} MiB  guest avail ${mib(t.guestAvailableBytes).padStart(4)} MiB`
    + `  memcg ${mib(t.memcgUsageBytes)}/${mib(t.memcgLimitBytes)} MiB${t.memcgSwapBytes === null ? '' : ` swap ${mib(t.memcgSwapBytes)} MiB`}  host events ${t.hostEvents}`
    + `${t.guestInPressure ? '  GUEST PRESSURE' : ''}  (${t.mode})`;
}

const pct = (part: number, whole: number): string => (whole > 0 ? `${Math.round((100 * Math.min(part, whole)) / whole)} %` : '-');

function swapText(s: SwapFigures): string {
  const memcg = s.memcgOutBytes === null ? 'memcg swap not accounted on this host'
    : `memcg swap-out ${mib(s.memcgOutBytes)} MiB (peak use ${mib(s.memcgPeakBytes)} MiB)`;
  return `${memcg}; machine pswpout +${s.pswpout} pages (${mib(s.pswpout * 4096)} MiB, all jobs)`;
}

function summary(r: DemoResult): string {
  const rows = r.decisions.filter((d) => d.oldTargetBytes !== d.newTargetBytes)
    .map((d) => `  ${d.time.slice(11, 19)}  ${d.rule.padEnd(22)} ${mib(d.oldTargetBytes).padStart(4)} -> ${mib(d.newTargetBytes).padStart(4)} MiB  ${d.rule.startsWith('guest-pressure') ? `${d.event}: ` : ''}${d.reason}`);
  // Runs of ignored events are folded into one history entry with a count.
  const ignored = r.decisions.filter((d) => d.oldTargetBytes === d.newTargetBytes)
    .reduce((n, d) => n + ((d as { count?: number }).count ?? 1), 0);
  const n = r.neighbour;
  const peak = Math.max(0, ...r.ticks.filter((t) => t.phase === 'neighbour').map((t) => t.memcgUsageBytes));
  const limit = r.ticks.at(-1)?.memcgLimitBytes ?? 0;
  return [
    '', `the neighbour grew by ${mib(n.grewBytes)} MiB; the balloon covered ${mib(n.balloonBytes)} MiB of it (${pct(n.balloonBytes, n.grewBytes)});`
      + ` ${mib(n.needBytes)} MiB had to come back for it to fit under the limit: ${n.needBytes > 0 ? `${pct(n.balloonBytes, n.needBytes)} covered` : 'nothing to cover'}`,
    `host swap-out while the neighbour grew: ${swapText(r.swap.neighbour)}; the memcg peaked at ${mib(peak)} of ${mib(limit)} MiB`,
    `host swap-out while the guest took its memory back (the neighbour still there): ${swapText(r.swap.guestNeedsMemory)}`,
    `peak balloon while the neighbour squeezed: ${mib(r.peakTargetBytes)} MiB`,
    `decisions that moved the target (${rows.length}; ${ignored} more events were ignored, e.g. during hysteresis or rate limit):`,
    ...rows,
  ].join('\n');
}

async function main(): Promise<void> {
  const a = await yargs(hideBin(process.argv))
    .scriptName('npm run demo --')
    .usage('$0 [options]\n\nBoots a 1 GiB Debian guest under the patched QEMU with vhost-user-balloon, in a host\n'
      + 'memory cgroup with a limit. The guest touches and frees memory (automatic ballooning is off\n'
      + 'meanwhile). A neighbour process then squeezes that cgroup: the host policy reads\n'
      + 'the cgroup every second (and on vmpressure or PSI events) and asks the guest, in one go, for what\n'
      + 'the cgroup needs back to keep its headroom. Then the guest needs memory: guest pressure gives it\n'
      + 'back its shortfall at once. At the end: how much of the neighbour\'s growth the balloon covered,\n'
      + 'and the host\'s swap-out (the memcg\'s swap use, and the machine\'s pswpout).\n'
      + 'Needs root and a memory cgroup (v1 memory, or the cgroup2 memory controller). While it runs: balloonctl status demo')
    .option('vm', { type: 'string', default: 'demo', describe: 'VM name (balloonctl finds the daemon by it)' })
    .option('mem', { type: 'number', default: 1024, describe: 'Guest RAM, MiB' })
    .option('limit', { type: 'number', default: 1400, describe: 'Host memcg limit for QEMU + neighbour, MiB' })
    .option('neighbour', { type: 'number', default: 700, describe: 'What the neighbour grows to, MiB' })
    .option('guest-touch', { type: 'number', default: 700, describe: 'Guest memory touched then freed at boot, MiB' })
    .option('guest-need', { type: 'number', default: 750, describe: 'What the guest workload allocates at the end, MiB' })
    .option('phase', { type: 'number', default: 60, describe: 'Longest time for each phase, seconds' })
    .example('npm run demo', 'the default run, about a minute')
    .example('npm run demo -- --neighbour 800 --phase 90', 'squeeze harder')
    .strict()
    .help()
    .parse();
  if (process.getuid?.() !== 0) throw new Error('the demo needs root: it creates a memory cgroup and may turn on a temporary swap file');
  const daemonJs = resolve(fileURLToPath(import.meta.url), '..', '..', '..', 'src', 'main.js');
  const tty = process.stdout.isTTY;
  const result = await runDemo({
    vm: a.vm, memMiB: a.mem, limitMiB: a.limit, neighbourMiB: a.neighbour,
    guestTouchMiB: a['guest-touch'], guestNeedMiB: a['guest-need'], phaseSeconds: a.phase,
    daemonArgs: [], daemonJs,
    say: (s) => process.stdout.write(`${tty ? '\r\x1b[K' : ''}== ${s}\n`),
    onTick: (t) => process.stdout.write(tty ? `\r\x1b[K${line(t)}` : `${line(t)}\n`),
  });
  process.stdout.write(`${tty ? '\n' : ''}${summary(result)}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`\ndemo: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
