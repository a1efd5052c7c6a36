// A small harness for fuzz targets over what a guest controls. A target is a
// fast-check arbitrary (the inputs) and a check that throws when an invariant
// breaks; `runTarget` runs it for a number of executions or a time budget and
// reports executions, exec/s and, on a finding, the input and how to replay it.
// The same targets run for a few seconds each in the suite
// (test/fuzz/*.test.ts, through fuzz-test.ts) and for >= 10^6 executions in
// bench/fuzz-ts.ts. Why fast-check and not jazzer.js: docs/fuzzing.md.
//
// No vitest import here: bench/fuzz-ts.ts runs these under plain node.
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';

export interface FuzzTarget<T> {
  /** Short name: the test title and the bench's --target. */
  readonly name: string;
  /** What the target feeds and what it asserts, one line. */
  readonly about: string;
  /** The inputs. Should reach every byte string the code can be given (see docs/fuzzing.md). */
  readonly input: fc.Arbitrary<T>;
  /** Run the code under test on one input; throw (see `invariant`) when it misbehaves. */
  check(input: T): void;
  /** Inputs always tried first (known edge cases, earlier findings). */
  readonly examples?: readonly T[];
}

export function defineTarget<T>(t: FuzzTarget<T>): FuzzTarget<T> {
  return t;
}

/** A broken invariant: the message says which, with the values involved. */
export class InvariantError extends Error {
  override name = 'InvariantError';
}

export function invariant(cond: unknown, what: string, details?: () => unknown): asserts cond {
  if (!cond) throw new InvariantError(details ? `${what}: ${fc.stringify(details())}` : what);
}

/** Deep strict equality (node:util); the message shows both values. */
export function sameValue(actual: unknown, expected: unknown, what: string): void {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new InvariantError(`${what}: got ${clip(fc.stringify(actual))}, expected ${clip(fc.stringify(expected))}`);
  }
}

const clip = (s: string, n = 2000) => (s.length > n ? `${s.slice(0, n)}... (${s.length} chars)` : s);

export interface FuzzOptions {
  /** Stop after this many executions (default: 10^6 when no time budget is given). */
  runs?: number;
  /** Stop after this many milliseconds. */
  timeMs?: number;
  /** Seed for the generator (default: random, printed). */
  seed?: number;
  /** Replay one input: the `path` of an earlier finding, with its seed. */
  path?: string;
}

export interface FuzzFinding {
  error: string;
  /** The (shrunk) input, printed with fc.stringify. */
  input: string;
  seed: number;
  path: string | null;
  shrinks: number;
}

export interface FuzzResult {
  name: string;
  executions: number;
  ms: number;
  execPerSec: number;
  seed: number;
  finding: FuzzFinding | null;
}

/** Run one target. Synchronous; never throws for a finding (it is in the result). */
export function runTarget<T>(t: FuzzTarget<T>, opts: FuzzOptions = {}): FuzzResult {
  let executions = 0;
  const property: fc.IProperty<[T]> = fc.property(t.input, (input: T) => {
    executions++;
    t.check(input);
  });
  const seed = opts.seed ?? ((Math.random() * 2 ** 31) | 0);
  const runs = opts.runs ?? (opts.timeMs === undefined ? 1_000_000 : Number.MAX_SAFE_INTEGER);
  const t0 = performance.now();
  const params: fc.Parameters<[T]> = {
    seed,
    numRuns: runs,
    ...(opts.path !== undefined ? { path: opts.path } : {}),
    ...(t.examples ? { examples: t.examples.map((e) => [e] as [T]) } : {}),
    ...(opts.timeMs !== undefined ? { plugins: [fc.interruptAfterTimeLimit(opts.timeMs)] } : {}),
  };
  const details: fc.RunDetails<[T]> = fc.check(property, params);
  const ms = performance.now() - t0;
  let finding: FuzzFinding | null = null;
  if (details.failed) {
    const err = details.errorInstance;
    finding = {
      error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
      input: clip(fc.stringify(details.counterexample?.[0]), 20_000),
      seed: details.seed,
      path: details.counterexamplePath,
      shrinks: details.numShrinks,
    };
  }
  // Without a finding every execution was a generated input that passed.
  const done = finding ? executions : details.numRuns;
  return { name: t.name, executions: done, ms, execPerSec: done / (ms / 1000), seed: details.seed, finding };
}

export function describeResult(r: FuzzResult): string {
  const head = `${r.name}: ${r.executions} executions in ${(r.ms / 1000).toFixed(2)} s, ${Math.round(r.execPerSec)} exec/s, seed ${r.seed}`;
  if (!r.finding) return `${head}, no finding`;
  const f = r.finding;
  return `${head}\nFINDING after ${f.shrinks} shrinks: ${f.error}\ninput: ${f.input}\n`
    + `replay: node dist/bench/fuzz-ts.js --target ${r.name} --seed ${f.seed}${f.path ? ` --path ${f.path}` : ''}`;
}
