// Pure parts of the isolation benchmark (bench/isolation.ts): the results'
// shape, medians and spreads per scenario, and the markdown table. No I/O.
import type { AckFigures } from '../../test/sim/neighbour.js';
import { median } from '../device/report.js';

/** The target of issue 15: the other VM's inflate buffers acknowledged with a p99 under this. */
export const P99_TARGET_MS = 5;

export interface IsolationRun {
  scenario: string;
  label: string;
  run: number;
  /** 1-minute load average when the run started (other work on the machine). */
  loadAvg: number;
  alone: AckFigures;
  during: AckFigures;
  ackedWhileNoisy: number;
  neighbourMs: number | null;
}

export interface IsolationResults {
  command: string;
  startedAt: string;
  finishedAt: string;
  machine: { cpus: number; memTotalMiB: number; kernel: string; node: string };
  options: { runs: number; scenarios: string[]; aloneMs: number };
  runs: IsolationRun[];
}

export interface Spread { median: number; min: number; max: number }

export function spread(xs: readonly number[]): Spread {
  return { median: median([...xs]), min: Math.min(...xs), max: Math.max(...xs) };
}

export const showSpread = (s: Spread, digits = 2): string =>
  `${s.median.toFixed(digits)} [${s.min.toFixed(digits)}-${s.max.toFixed(digits)}]`;

export interface ScenarioRow {
  scenario: string;
  label: string;
  runs: number;
  aloneP99: Spread;
  duringP50: Spread;
  duringP99: Spread;
  duringMax: Spread;
  /** Runs whose p99 with the neighbour is under P99_TARGET_MS. */
  met: number;
}

/** One row per scenario, in the order the scenarios first appear. */
export function scenarioRows(runs: readonly IsolationRun[]): ScenarioRow[] {
  const order = [...new Set(runs.map((r) => r.scenario))];
  return order.map((scenario) => {
    const rs = runs.filter((r) => r.scenario === scenario);
    return {
      scenario,
      label: rs[0]!.label,
      runs: rs.length,
      aloneP99: spread(rs.map((r) => r.alone.p99)),
      duringP50: spread(rs.map((r) => r.during.p50)),
      duringP99: spread(rs.map((r) => r.during.p99)),
      duringMax: spread(rs.map((r) => r.during.max)),
      met: rs.filter((r) => r.during.p99 < P99_TARGET_MS).length,
    };
  });
}

export function markdownTable(r: IsolationResults): string {
  const load = spread(r.runs.map((x) => x.loadAvg));
  const lines = [
    `The quiet VM's inflate acknowledgements (ms, median [min-max] over runs), alone and while the neighbour runs; `
      + `target p99 < ${P99_TARGET_MS} ms. ${r.options.runs} runs per scenario, load average at start ${showSpread(load, 1)}, `
      + `${r.machine.cpus} CPUs, kernel ${r.machine.kernel}, node ${r.machine.node}.`,
    '',
    '| neighbour | alone p99 | with it p50 | with it p99 | with it max | p99 < target |',
    '|---|---|---|---|---|---|',
  ];
  for (const row of scenarioRows(r.runs)) {
    lines.push(`| ${row.label} | ${showSpread(row.aloneP99)} | ${showSpread(row.duringP50)} | ${showSpread(row.duringP99)} | `
      + `${showSpread(row.duringMax)} | ${row.met} of ${row.runs} |`);
  }
  return lines.join('\n');
}
