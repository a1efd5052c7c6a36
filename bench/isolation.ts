// Isolation between VMs in one host daemon, as figures: a quiet VM's inflate
// buffers (one 256-PFN buffer at a time, as Linux sends them) and their
// acknowledgement latency, alone and while a noisy neighbour on the same
// daemon does its worst (test/sim/noisy.ts, a process of its own). Each
// scenario runs on a fresh daemon, the scenarios interleaved run by run.
// The tests (test/integration/isolation.test.ts) assert no stall; the p99
// target is checked here. `npm run bench:isolation -- --help`.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import type { ChildProcess } from 'node:child_process';

import { DaemonProcess } from '../test/sim/daemon.js';
import { SimGuest } from '../test/sim/driver.js';
import { compareWithNeighbour, FLOODS, Noisy, showAcks } from '../test/sim/neighbour.js';
import { type IsolationResults, type IsolationRun, markdownTable } from './isolation/report.js';

const MiB = 2 ** 20;
const ALONE_MS = 1500;

const HELP = `usage: node dist/bench/isolation.js [options]
  --runs 5                 runs per scenario (the scenarios interleaved)
  --scenarios LIST         comma-separated, of: ${FLOODS.map(([, s]) => s).join(', ')} (default: all)
  --out docs/isolation/results.json   results JSON (a markdown table goes beside it, .md)
  --from FILE              re-print the table of a results JSON, run nothing
Run it on an otherwise quiet machine: other work moves the quiet VM's p99 more than the neighbour does.`;

const { values: a } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    scenarios: { type: 'string', default: FLOODS.map(([, s]) => s).join(',') },
    out: { type: 'string', default: 'docs/isolation/results.json' },
    from: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

async function oneRun(scenario: string, label: string, run: number): Promise<IsolationRun> {
  const loadAvg = loadavg()[0]!;
  const daemon = await DaemonProcess.startHost(['--log-level', 'info']);
  const children: ChildProcess[] = [];
  let quiet: SimGuest | undefined;
  try {
    const sa = await daemon.addVm('noisy', { 'stats-interval': 0 });
    const sb = await daemon.addVm('quiet', { 'stats-interval': 0 });
    const noisy = await Noisy.start(sa, scenario, 1100, (c) => children.push(c));
    quiet = await SimGuest.start({ socketPath: sb, ramBytes: 512 * MiB });
    quiet.mem.touch(0, quiet.mem.usableEnd);
    const r = await compareWithNeighbour(quiet, noisy, ALONE_MS);
    await noisy.state('done');
    console.log(`[${scenario} run ${run}] alone ${showAcks(r.alone)} | with the neighbour ${showAcks(r.during)} (load ${loadAvg.toFixed(1)})`);
    return { scenario, label, run, loadAvg, ...r };
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    quiet?.close();
    const code = await daemon.stop();
    if (code !== 0) console.error(`[${scenario} run ${run}] daemon exited with ${code}`);
  }
}

async function main(): Promise<void> {
  if (a.help) {
    console.log(HELP);
    return;
  }
  if (a.from) {
    console.log(markdownTable(JSON.parse(readFileSync(a.from, 'utf8')) as IsolationResults));
    return;
  }
  const runs = Number(a.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs ${a.runs}: give a whole number of runs, 1 or more`);
  const known = new Map(FLOODS.map(([l, s]) => [s, l]));
  const scenarios = a.scenarios!.split(',').map((s) => s.trim()).filter(Boolean);
  for (const s of scenarios) if (!known.has(s)) throw new Error(`--scenarios: no scenario "${s}"; choose from ${[...known.keys()].join(', ')}`);
  const results: IsolationResults = {
    command: `node dist/bench/isolation.js ${process.argv.slice(2).join(' ')}`.trim(),
    startedAt: new Date().toISOString(),
    finishedAt: '',
    machine: { cpus: cpus().length, memTotalMiB: Math.round(totalmem() / MiB), kernel: release(), node: process.version },
    options: { runs, scenarios, aloneMs: ALONE_MS },
    runs: [],
  };
  for (let run = 1; run <= runs; run++) {
    for (const s of scenarios) results.runs.push(await oneRun(s, known.get(s)!, run));
  }
  results.finishedAt = new Date().toISOString();
  mkdirSync(dirname(a.out!), { recursive: true });
  writeFileSync(a.out!, `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(a.out!.replace(/\.json$/, '') + '.md', `${markdownTable(results)}\n`);
  console.log(markdownTable(results));
}

main().then(() => process.exit(0), (e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
