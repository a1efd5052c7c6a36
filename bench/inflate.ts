// Inflate 1 GiB through the simulated guest into the real daemon, and print
// throughput next to the discard limit measured on the same memfd, per-batch
// latency (p50/p99) for contiguous and shuffled PFNs, and the daemon's RSS and
// idle CPU. Figures, not a test: run with `npm run bench`.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

import { libc } from '../src/transport/libc.js';
import { DaemonProcess } from '../test/sim/daemon.js';
import { SimGuest } from '../test/sim/driver.js';
import { PAGE } from '../test/sim/guest-memory.js';

const madvise = libc().func('int madvise(void *addr, size_t len, int advice)');
const MADV_REMOVE = 9;
const GiB = 2 ** 30;
const PAGES = GiB / PAGE;

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;
const gibps = (bytes: number, ms: number) => (bytes / GiB / (ms / 1000)).toFixed(2);

/** The discard limit: madvise(MADV_REMOVE) on the same memfd, `chunk` bytes per call, in `order`. */
function discardLimit(guest: SimGuest, chunkPages: number, order: number[]): number {
  guest.mem.touch(0, GiB);
  const t0 = performance.now();
  for (const start of order) madvise(guest.mem.hostAddr + BigInt(start * PAGE), chunkPages * PAGE, MADV_REMOVE);
  const ms = performance.now() - t0;
  if (guest.mem.backedBytes(0, GiB) !== 0) throw new Error('discard limit run left memory behind');
  return ms;
}

interface Run { ms: number; batches: number[]; deflateMs: number; deflateBatches: number[] }

async function inflateRun(guest: SimGuest, pfns: number[], updateSize: 'batch' | 'end'): Promise<Run> {
  guest.mem.touch(0, GiB);
  // Freed = the memfd's allocation down to what lies outside the ballooned
  // GiB (rings, buffers). One fstat per check: SEEK_DATA over a memfd that a
  // shuffled discard left in 100k pieces would cost more than the discard.
  const outside = guest.mem.allocatedBytes() - guest.mem.backedBytes(0, GiB);
  const batches: number[] = [];
  const t0 = performance.now();
  await guest.inflate(pfns.length, { pfns, onBatch: (ms) => batches.push(ms), updateSize });
  // Deferred discard completes shortly after the last ack: wait for it
  // (sleeping, not spinning: the discard thread needs the core).
  while (guest.mem.allocatedBytes() > outside) await new Promise((r) => setTimeout(r, 1));
  const ms = performance.now() - t0;
  if (guest.mem.backedBytes(0, GiB) !== 0) throw new Error('inflate run left memory behind');
  // Deflate: the same buffers and acks with no discard behind them, i.e. the
  // round-trip floor of this guest, daemon and machine.
  const deflateBatches: number[] = [];
  const t1 = performance.now();
  await guest.deflate(pfns.length, { onBatch: (b) => deflateBatches.push(b), updateSize });
  return { ms, batches, deflateMs: performance.now() - t1, deflateBatches };
}

const lat = (xs: number[]) => `p50 ${(pct(xs, 0.5) * 1000).toFixed(0)} us, p99 ${(pct(xs, 0.99) * 1000).toFixed(0)} us`;

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
}

async function main(): Promise<void> {
  for (const mode of ['deferred', 'immediate'] as const) {
    const daemon = await DaemonProcess.start(['--stats-interval', '0', '--log-level', 'warn', '--discard', mode]);
    const guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: GiB + (16 << 20) });
    // Linux hands out pages from the top down: contiguous, descending.
    const contiguous = Array.from({ length: PAGES }, (_, i) => PAGES - 1 - i);
    const shuffled = [...contiguous];
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
    }
    console.log(`\n== discard mode: ${mode} (1 GiB memfd, 256 PFNs per buffer, one ack per buffer)`);
    // 'batch': actual written (SET_CONFIG) after every buffer, as Linux 6.1 does;
    // 'end': written once, which isolates the device's own per-buffer cost.
    for (const updateSize of ['batch', 'end'] as const) {
      for (const [name, pfns] of [['contiguous', contiguous], ['shuffled', shuffled]] as const) {
        const r = await inflateRun(guest, pfns, updateSize);
        console.log(`inflate 1 GiB ${name.padEnd(10)} actual per ${updateSize.padEnd(5)}: ${r.ms.toFixed(0)} ms = ${gibps(GiB, r.ms)} GiB/s until freed; batch latency ${lat(r.batches)} (${r.batches.length} batches)`);
        console.log(`  deflate, same buffers, no discard (round-trip floor): ${r.deflateMs.toFixed(0)} ms = ${gibps(GiB, r.deflateMs)} GiB/s; batch latency ${lat(r.deflateBatches)}`);
      }
    }
    if (mode === 'deferred') {
      const perMiB = Array.from({ length: GiB / 2 ** 20 }, (_, i) => i * 256);
      const perPage = shuffled;
      const ms1 = discardLimit(guest, 256, perMiB);
      const ms2 = discardLimit(guest, 1, perPage);
      const msAll = discardLimit(guest, PAGES, [0]);
      console.log(`discard limit, same memfd: 1 MiB per call ${gibps(GiB, ms1)} GiB/s; one 4 KiB page per call (shuffled) ${gibps(GiB, ms2)} GiB/s; one call for 1 GiB ${gibps(GiB, msAll)} GiB/s`);
      const pid = daemon.child.pid!;
      const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
      const hz = 100;
      const c0 = cpuTicks(pid);
      await new Promise((r) => setTimeout(r, 10_000));
      const c1 = cpuTicks(pid);
      console.log(`daemon RSS ${(Number(rss) / 1024).toFixed(1)} MiB (includes pages of guest RAM it read); idle CPU over 10 s: ${(((c1 - c0) / hz / 10) * 100).toFixed(2)}% (${c1 - c0} ticks)`);
    }
    guest.close();
    await daemon.stop();
  }
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
