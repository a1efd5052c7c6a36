// The two sides of an isolation measurement, shared by the isolation tests
// (test/integration/isolation.test.ts) and their benchmark (bench/isolation.ts):
// a noisy neighbour in a process of its own (noisy.ts), and a quiet VM's
// guest that inflates one 256-PFN buffer at a time (Linux's tell_host())
// and takes every acknowledgement's latency, first alone, then while the
// neighbour runs its scenario.
import { ChildProcess, spawn } from 'node:child_process';
import { basename, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { percentile } from '../../src/control/latency.js';
import type { SimGuest } from './driver.js';
import { PAGE } from './guest-memory.js';

// Compiled, this module sits beside noisy.js in dist/test/sim; run from source (vitest), it does not.
const NOISY_JS = basename(resolve(import.meta.dirname, '..', '..')) === 'dist'
  ? resolve(import.meta.dirname, 'noisy.js')
  : resolve(import.meta.dirname, '..', '..', 'dist', 'test', 'sim', 'noisy.js');

/** Scenarios of noisy.ts that do their worst and end ("done"), with what they do. */
export const FLOODS: ReadonlyArray<readonly [label: string, scenario: string]> = [
  ['1 GiB inflate + deflate x3, 256-PFN buffers one at a time (Linux)', 'inflate-1g'],
  ['1 GiB inflate + deflate x3, 256-PFN buffers, the whole inflate ring in flight', 'inflate-1g-ring'],
  ['1 GiB inflate + deflate x12, one buffer of 262,144 PFNs each', 'inflate-1g-huge'],
  ['100,000 messages, one per buffer, the message queue kept full', 'message-flood'],
  ['100,000 messages in 64 KiB buffers, flood after flood for 1.5 s', 'message-flood-big'],
  ['100,000 vhost-user messages from the frontend', 'vhost-flood'],
];

/** The neighbour's process (dist/test/sim/noisy.js): ready after its handshake, go starts its scenario. */
export class Noisy {
  private readonly states: Array<Record<string, unknown>> = [];
  private waiters: Array<() => void> = [];

  private constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      try {
        this.states.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        return;
      }
      for (const w of this.waiters.splice(0)) w();
    });
    child.stderr!.on('data', (b: Buffer) => process.stderr.write(`[noisy] ${b.toString()}`));
  }

  /** `track` gets the child at once, so that a caller can kill it even if the handshake fails. */
  static async start(socket: string, scenario: string, ramMiB = 1100, track: (c: ChildProcess) => void = () => undefined): Promise<Noisy> {
    const child = spawn(process.execPath, [NOISY_JS, socket, scenario, String(ramMiB)], { stdio: ['pipe', 'pipe', 'pipe'] });
    track(child);
    const n = new Noisy(child);
    await n.state('ready', 20_000);
    return n;
  }

  go(): void {
    this.child.stdin!.write('go\n');
  }

  has(state: string): boolean {
    return this.states.some((s) => s.state === state);
  }

  async state(state: string, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = this.states.find((x) => x.state === state);
      if (s) return s;
      if (this.child.exitCode !== null && !this.has(state)) throw new Error(`noisy neighbour exited (${this.child.exitCode}) before "${state}"`);
      if (Date.now() > deadline) throw new Error(`noisy neighbour: no "${state}" within ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

export interface AckFigures {
  /** Acknowledgements measured. */
  n: number;
  p50: number;
  p99: number;
  max: number;
}

export function ackFigures(ms: readonly number[]): AckFigures {
  const s = [...ms].sort((a, b) => a - b);
  return { n: s.length, p50: percentile(s, 0.5), p99: percentile(s, 0.99), max: s.at(-1) ?? Number.NaN };
}

export const showAcks = (f: AckFigures): string =>
  `n=${f.n} p50=${f.p50.toFixed(3)} ms p99=${f.p99.toFixed(3)} ms max=${f.max.toFixed(2)} ms`;

export interface AckRun {
  /** Every buffer's post -> acknowledgement (ms). */
  latencies: number[];
  /** Acknowledgements completed before `over()` first held. */
  before: number;
}

/**
 * Inflate one 256-PFN buffer at a time (the balloon deflated, unmeasured,
 * when it nears the guest's RAM) until `over()` and at least `min` samples.
 */
export async function ackLatencies(g: SimGuest, over: () => boolean, min: number): Promise<AckRun> {
  const latencies: number[] = [];
  let before = -1;
  const cap = Math.floor(g.mem.usableEnd / PAGE) - 4096;
  for (;;) {
    if (before < 0 && over()) before = latencies.length;
    if (before >= 0 && latencies.length >= min) return { latencies, before };
    if (g.pages.size + 256 > cap) await g.deflate(g.pages.size, { updateSize: 'end' });
    await g.inflate(256, { onBatch: (ms) => latencies.push(ms) });
  }
}

export interface Comparison {
  alone: AckFigures;
  during: AckFigures;
  /** The quiet VM's acknowledgements while the neighbour's scenario ran (before its "done" or "stalled"). */
  ackedWhileNoisy: number;
  /** The neighbour's own time for its scenario (ms), when it ended. */
  neighbourMs: number | null;
}

/** The quiet VM's latency alone for `aloneMs`, then while the neighbour's scenario runs (at least `minDuring` samples). */
export async function compareWithNeighbour(quiet: SimGuest, noisy: Noisy, aloneMs = 1500, minDuring = 200): Promise<Comparison> {
  const t = Date.now();
  const alone = ackFigures((await ackLatencies(quiet, () => Date.now() - t >= aloneMs, 500)).latencies);
  noisy.go();
  const run = await ackLatencies(quiet, () => noisy.has('done') || noisy.has('stalled'), minDuring);
  const done = noisy.has('done') ? await noisy.state('done') : null;
  return { alone, during: ackFigures(run.latencies), ackedWhileNoisy: run.before, neighbourMs: done ? Number(done.ms) : null };
}
