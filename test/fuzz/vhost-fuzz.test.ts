// The libFuzzer target native/fuzz/fuzz-vhost.c (a hostile vhost-user
// frontend against the shim, its firewall and libvhost-user) for a bounded
// time, from its seed corpus, in a temporary directory: any crash, sanitizer
// report, leak, fd leak or hang fails. Longer runs: bench/fuzz-vhost.sh.
// VUB_FUZZ_SECONDS overrides the 30 s.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SECONDS = Number(process.env.VUB_FUZZ_SECONDS ?? 30);
const SYMBOLIZER = '/usr/lib/llvm-14/bin/llvm-symbolizer';

/** Run the fuzzer; its output (libFuzzer writes to stderr), last lines kept. */
function fuzz(bin: string, args: string[]): Promise<{ code: number | null; lines: string[] }> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, ...(existsSync(SYMBOLIZER) ? { ASAN_SYMBOLIZER_PATH: SYMBOLIZER } : {}) };
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    const lines: string[] = [];
    let partial = '';
    const take = (chunk: Buffer) => {
      const parts = (partial + chunk.toString('utf8')).split('\n');
      partial = parts.pop()!;
      for (const l of parts) if (!l.includes('\tNEW_FUNC[')) lines.push(l);
      if (lines.length > 400) lines.splice(0, lines.length - 300);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, lines: partial ? [...lines, partial] : lines }));
  });
}

it(`the vhost-user fuzz target finds nothing in ${SECONDS} s`, async () => {
  const bin = execFileSync('bash', ['native/build.sh', '--fuzz'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  const dir = mkdtempSync(join(tmpdir(), 'vub-fuzz-'));
  try {
    const seeds = join(dir, 'seeds');
    const corpus = join(dir, 'corpus');
    const artifacts = join(dir, 'artifacts');
    for (const d of [seeds, corpus, artifacts]) mkdirSync(d);
    execFileSync(bin, [], { env: { ...process.env, VUB_FUZZ_SEEDS: seeds } });
    const { code, lines } = await fuzz(bin, [
      `-max_total_time=${SECONDS}`, '-timeout=10', '-print_final_stats=1', `-artifact_prefix=${artifacts}/`, corpus, seeds,
    ]);
    const done = lines.filter((l) => /^#\d+\s+(DONE|pulse|NEW|REDUCE|INITED)/.test(l)).at(-1) ?? '';
    const stat = (name: string) => lines.find((l) => l.startsWith(`stat::${name}:`))?.split(':').at(-1)?.trim();
    const cov = /cov: (\d+) ft: (\d+) corp: (\d+)\/(\S+)/.exec(done);
    console.log(`fuzz-vhost: ${stat('number_of_executed_units')} executions in ${SECONDS} s `
      + `(${stat('average_exec_per_sec')}/s), cov ${cov?.[1]}, ft ${cov?.[2]}, corpus ${cov?.[3]} inputs (${cov?.[4]})`);
    const report = lines.slice(-80).join('\n');
    expect(readdirSync(artifacts), `the fuzzer wrote a crash/leak/timeout input:\n${report}`).toEqual([]);
    expect(code, `the fuzzer failed:\n${report}`).toBe(0);
    expect(Number(stat('number_of_executed_units'))).toBeGreaterThan(1000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, (SECONDS + 180) * 1000);
