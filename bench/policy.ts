// The policy benchmark (issue 16, item 5, scenarios b-d): which arm keeps the
// host from swapping, and who gives the memory. (a), the seed's experiment,
// is bench/overcommit.ts.
//
//   node dist/bench/policy.js --scenario idle-neighbour|page-cache|weights [--arms vanilla,ours,...]
//        [--runs 5] [--size key=value,...] [--out DIR]
//   node dist/bench/policy.js --scenario S --from DIR/results.json [--out DIR]   (tables and plots again)
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_HOST_PARAMS } from '../src/policy/host.js';
import { ensureSwap, type TempSwap } from '../lab/host/swap.js';
import { guestImage, qemuBinary } from '../lab/vm/index.js';
import { ARMS, pairedOrder, parseRunsFor, pickArms, unknownFlags } from './policy/arms.js';
import { coveredAfter, mediansTable, type RunResult, runsTable, type Sample, type ScenarioName, scenarioTable } from './policy/metrics.js';
import { daemonHelp, type Rig } from './policy/rig.js';
import { DEFAULT_WEIGHTS, runScenario, SIZES } from './policy/scenarios.js';
import { timelineSvg } from './overcommit/report.js';
import { decisionsTable, hostDecisionsText } from '../src/cli/format.js';
import type { DecisionRecord, HostDecisionRecord } from '../src/control/status.js';
import type { Allocator } from '../lab/host/allocator.js';
import type { Memcg } from '../lab/host/memcg.js';

const SCENARIOS = Object.keys(SIZES) as ScenarioName[];
const RESERVE_PERCENT = DEFAULT_HOST_PARAMS.guestReservePercent;

class UsageError extends Error {}

const HELP = `Usage: node dist/bench/policy.js --scenario NAME [options]   (npm run bench:policy -- ...)

Scenarios of issue 16, item 5 (docs/policy-bench/README.md):
  idle-neighbour  an idle guest that touched and freed memory, and a neighbour growing in its memcg
  page-cache      guest "cache" reads its disk and holds the cache; guest "grow" grows
  weights         four guests, weights ${DEFAULT_WEIGHTS.join(', ')}, and a growing neighbour: the share each gives
Needs root (memcg, swap file) and the patched QEMU + guest image (npm run setup).

  --scenario NAME  ${SCENARIOS.join(' | ')}
  --arms LIST      comma-separated: ${Object.keys(ARMS).join(', ')} (default: vanilla,ours)
  --runs N         runs per arm, paired: run r of every arm before run r + 1 (default 5)
  --runs-for A=N,...  runs of these arms instead (e.g. vanilla=5,ours=5 with --runs 3)
  --size K=V,...   override the scenario's sizes (MiB) and hold time (s); defaults:
${SCENARIOS.map((s) => `                   ${s}: ${Object.entries(SIZES[s]).map(([k, v]) => `${k}=${v}`).join(',')}`).join('\n')}
  --weights LIST   weights: one guest per weight (default ${DEFAULT_WEIGHTS.join(',')}); all 1: no --weight flag
  --out DIR        results.json, table.md, timeline-ARM.svg (default bench-results/policy-SCENARIO)
  --from FILE      only render the tables and plots of an earlier results.json into --out
  --help           this text`;

interface Saved { scenario: ScenarioName; size: Record<string, number>; weights?: number[]; arms: string[]; results: RunResult[]; timelines: Record<string, Sample[]> }

function parseSize(text: string | undefined, base: Record<string, number>): Record<string, number> {
  const out = { ...base };
  for (const kv of (text ?? '').split(',').filter(Boolean)) {
    const [k, v] = kv.split('=');
    if (!k || !(k in base)) throw new UsageError(`--size ${kv}: unknown key (${Object.keys(base).join(', ')})`);
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new UsageError(`--size ${kv}: expected a number >= 0`);
    out[k] = n;
  }
  return out;
}

function writeOutputs(out: string, saved: Saved): void {
  mkdirSync(out, { recursive: true });
  // Results saved before coveredFromSqueezeS existed: from their timelines.
  for (const r of saved.results) {
    const t = saved.timelines[`${r.arm}#${r.run}`];
    if (r.coveredFromSqueezeS === undefined && t) r.coveredFromSqueezeS = coveredAfter(t, r.vms.map((v) => v.name), r.needMiB, 0);
  }
  const table = [scenarioTable(saved.scenario, saved.results, RESERVE_PERCENT),
    '\nMedians [min-max] per arm:\n', mediansTable(saved.results), '\nEvery run, in order:\n', runsTable(saved.results)].join('\n');
  writeFileSync(join(out, 'table.md'), `${table}\n`);
  for (const arm of saved.arms) {
    const t = saved.timelines[`${arm}#1`];
    if (t) writeFileSync(join(out, `timeline-${arm}.svg`), timelineSvg(`${saved.scenario}: balloon sizes and memcg swap, ${arm} run 1 (MiB)`, t));
  }
  // What `balloonctl history` printed at the end of each run of our arms.
  const hist = saved.results.filter((r) => r.history).map((r) => [`## ${r.arm} run ${r.run}`, '', '```',
    (r.history?.host.length ? hostDecisionsText(r.history.host as HostDecisionRecord[]) : 'no host-wide decisions'),
    ...Object.entries(r.history?.vms ?? {}).map(([vm, d]) => `\n$ balloonctl history ${vm}\n${d.length ? decisionsTable(d as DecisionRecord[]) : 'no decisions'}`),
    '```', ''].join('\n'));
  if (hist.length) writeFileSync(join(out, 'history.md'), `# ${saved.scenario}: the daemon's decisions at the end of each run\n\n${hist.join('\n')}`);
  process.stdout.write(`${table}\n`);
}

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) { process.stdout.write(`${HELP}\n`); return; }
  const { values } = parseArgs({ options: {
    scenario: { type: 'string' }, arms: { type: 'string', default: 'vanilla,ours' }, runs: { type: 'string', default: '5' }, 'runs-for': { type: 'string' },
    size: { type: 'string' }, weights: { type: 'string', default: DEFAULT_WEIGHTS.join(',') }, out: { type: 'string' }, from: { type: 'string' },
  } });
  const scenario = values.scenario as ScenarioName | undefined;
  if (!scenario || !SCENARIOS.includes(scenario)) throw new UsageError(`--scenario: expected one of ${SCENARIOS.join(', ')}`);
  const out = values.out ?? `bench-results/policy-${scenario}`;
  if (values.from) {
    const saved = JSON.parse(readFileSync(values.from, 'utf8')) as Saved;
    if (saved.scenario !== scenario) throw new UsageError(`${values.from} holds scenario ${saved.scenario}, not ${scenario}`);
    writeOutputs(out, saved);
    return;
  }
  let arms;
  try { arms = pickArms(values.arms); } catch (e) { throw new UsageError((e as Error).message); }
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new UsageError(`--runs ${values.runs}: expected a whole number >= 1`);
  let runsFor: Map<string, number>;
  try { runsFor = parseRunsFor(values['runs-for'] ?? '', arms.map((a) => a.name)); } catch (e) { throw new UsageError((e as Error).message); }
  const runsOf = (a: { name: string }): number => runsFor.get(a.name) ?? runs;
  const size = parseSize(values.size, SIZES[scenario]);
  // Arms whose flags this daemon lacks (e.g. --policy before it lands) are refused up front.
  const weights = values.weights.split(',').map(Number);
  if (!weights.length || weights.some((w) => !Number.isInteger(w) || w < 1)) throw new UsageError(`--weights ${values.weights}: expected whole numbers >= 1`);
  const help = daemonHelp();
  const extra = scenario === 'weights' && weights.some((w) => w !== 1) ? ['--weight', '1'] : [];
  for (const a of arms.filter((x) => x.balloon === 'ours')) {
    const missing = unknownFlags([...a.daemonArgs, ...extra], help);
    if (missing.length) throw new UsageError(`arm ${a.name} needs daemon option(s) ${missing.map((m) => `--${m}`).join(', ')}, which this build lacks (vhost-user-balloon --help)`);
  }
  if (process.getuid?.() !== 0) throw new UsageError('needs root: it makes a memory cgroup and a swap file');

  const log = (s: string) => process.stderr.write(`${s}\n`);
  const live: { rig?: Rig; neighbour?: Allocator; memcg?: Memcg; swap?: TempSwap } = {};
  const cleanup = async () => {
    await live.neighbour?.kill();
    await live.rig?.stop();
    await live.memcg?.remove().catch(() => undefined);
    // swapoff can fail for a moment (seen: ENOMEM after 25 runs); once more, then say what is left on.
    const swap = live.swap;
    live.swap = undefined;
    for (let i = 0; swap && i < 3; i++) {
      try { swap.remove(); break; } catch (e) {
        if (i === 2) log(`warning: swap file ${swap.path} is still on (${(e as Error).message.split('\n')[0]}): swapoff ${swap.path} && rm ${swap.path}`);
        else await new Promise((r) => setTimeout(r, 5000));
      }
    }
  };
  const onSignal = () => { void cleanup().finally(() => process.exit(130)); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const qemu = await qemuBinary();
  const img = await guestImage();
  // Our own swap file even when the machine has swap: another job's may go away mid-run (seen: a memcg OOM).
  live.swap = ensureSwap(`/var/tmp/vub-policy-${process.pid}.swap`, 2048, { always: true });
  const saved: Saved = { scenario, size, ...(scenario === 'weights' ? { weights } : {}), arms: arms.map((a) => a.name), results: [], timelines: {} };
  mkdirSync(out, { recursive: true });
  try {
    for (const { arm, run } of pairedOrder(arms, runsOf)) {
      log(`== ${scenario} ${arm.name} run ${run}/${runsOf(arm)} (${new Date().toISOString()})`);
      const { result, samples } = await runScenario({ scenario, arm, run, size, weights, qemu, img, log }, live);
      saved.results.push(result);
      saved.timelines[`${arm.name}#${run}`] = samples;
      log(`   host swap-out (memcg) ${result.memcgSwapOutMiB.toFixed(0)} MiB (machine pswpout ${result.hostSwapOut}), memcg swap peak ${result.memcgSwapPeakMiB.toFixed(0)} MiB, need ${result.needMiB.toFixed(0)} MiB, balloons ${result.vms.map((v) => `${v.name}=${v.balloonEndMiB.toFixed(0)}`).join(' ')} MiB, load ${result.loadAvg?.start[0]} -> ${result.loadAvg?.end[0]}, guest swap-out ${result.vms.map((v) => v.guestSwapOut ?? '-').join('/')}, oom ${result.vms.map((v) => v.guestOomKills ?? '-').join('/')}`);
      writeFileSync(join(out, 'results.json'), JSON.stringify(saved, null, 1));
    }
  } finally {
    await cleanup();
  }
  writeOutputs(out, saved);
}

main().then(() => {
  // Seen: the weights runs wrote everything and then did not exit. Say what held the loop, and exit.
  const open = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap');
  if (open.length) process.stderr.write(`policy: done; exiting with these still open: ${open.join(', ')}\n`);
  process.exit(0);
}, async (e) => {
  const usage = e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
  process.stderr.write(usage ? `policy: ${(e as Error).message} (see --help)\n` : `policy: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
