// The fuzz targets over guest-controlled data (test/fuzz/targets/), each for
// a long run: >= 10^6 executions by default. The suite runs the same targets
// for a few seconds each (test/fuzz/*.test.ts). Method and figures:
// docs/fuzzing.md.
import { parseArgs } from 'node:util';
import { describeResult, type FuzzResult, runTarget } from '../test/fuzz/harness.js';
import { TARGETS } from '../test/fuzz/targets/index.js';

const HELP = `fuzz-ts: run the TypeScript fuzz targets over what a guest controls

  npm run build && node dist/bench/fuzz-ts.js [options]      (or: npm run fuzz -- [options])

Targets: ${TARGETS.map((t) => t.name).join(', ')}.
Each runs fast-check-generated inputs through the code under test and checks its invariants
(test/fuzz/targets/*.ts say which). Per target it prints executions, exec/s and time; a finding
prints the shrunk input and the command that replays it. Exit status 1 on any finding.
No root, no cgroups, no QEMU: pure functions and a fake connection.

Options:
  --runs N        executions per target (default 1000000)
  --seconds S     instead: run each target for S seconds
  --target NAME   only this target (repeatable)
  --seed N        generator seed (default: random, printed; the same seed replays the same inputs)
  --path P        with --seed and one --target: replay the finding at this counterexample path
  -h, --help      this text
`;

class UsageError extends Error {}

function options(argv: string[]) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        runs: { type: 'string' },
        seconds: { type: 'string' },
        target: { type: 'string', multiple: true },
        seed: { type: 'string' },
        path: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message.split('. ')[0] ?? String(err));
  }
  if (values.help) return 'help' as const;
  const num = (name: string, v: string | undefined, min: number) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} ${v}: an integer >= ${min}`);
    return n;
  };
  const names = values.target ?? TARGETS.map((t) => t.name);
  for (const n of names) if (!TARGETS.some((t) => t.name === n)) throw new UsageError(`--target ${n}: no such target (${TARGETS.map((t) => t.name).join(', ')})`);
  if (values.runs !== undefined && values.seconds !== undefined) throw new UsageError('--runs and --seconds: give one');
  if (values.path !== undefined && (values.seed === undefined || names.length !== 1)) throw new UsageError('--path needs --seed and one --target');
  const seconds = num('seconds', values.seconds, 1);
  return {
    targets: TARGETS.filter((t) => names.includes(t.name)),
    runs: num('runs', values.runs, 1) ?? (seconds === undefined ? 1_000_000 : undefined),
    timeMs: seconds === undefined ? undefined : seconds * 1000,
    seed: num('seed', values.seed, -(2 ** 31)),
    path: values.path,
  };
}

function main(argv: string[]): number {
  const o = options(argv);
  if (o === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  const results: FuzzResult[] = [];
  for (const t of o.targets) {
    process.stdout.write(`${t.name}: ${t.about}\n`);
    const r = runTarget(t, {
      ...(o.runs !== undefined ? { runs: o.runs } : {}),
      ...(o.timeMs !== undefined ? { timeMs: o.timeMs } : {}),
      ...(o.seed !== undefined ? { seed: o.seed } : {}),
      ...(o.path !== undefined ? { path: o.path } : {}),
    });
    results.push(r);
    process.stdout.write(`  ${describeResult(r).replace(/\n/g, '\n  ')}\n`);
  }
  process.stdout.write('\n| target | executions | exec/s | time | finding |\n| --- | ---: | ---: | ---: | --- |\n');
  for (const r of results) {
    process.stdout.write(`| ${r.name} | ${r.executions.toLocaleString('en')} | ${Math.round(r.execPerSec).toLocaleString('en')} | ${(r.ms / 1000).toFixed(1)} s | ${r.finding ? 'YES' : 'none'} |\n`);
  }
  return results.some((r) => r.finding) ? 1 : 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(`fuzz-ts: ${err.message} (see --help)\n`);
  process.exitCode = 2;
}
