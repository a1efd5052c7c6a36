// The ebizzy-like guest workload (native/workload/bizzy.c) in the real guest:
// the console command runs it, it prints its records, and its chunks are real
// anonymous memory while it runs (AnonPages grows, then falls back).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bizzyResult, createSwapDisk, guestImage, guestSwap, memInfo, qemuBinary, startVm, type Vm } from '../../lab/vm/index.js';

const CHUNKS = 32;
const SECONDS = 3;

describe('bizzy workload in the guest', () => {
  let vm: Vm | undefined;

  beforeAll(async () => {
    const [qemu, img] = [await qemuBinary(), await guestImage()];
    vm = await startVm({
      qemu, kernel: img.kernel, initrd: img.initrd, memMiB: 512,
      balloon: { kind: 'stock' }, guest: { scenario: 'idle', reportSeconds: 0.5 },
    });
    await vm.ready();
  }, 180_000);

  afterAll(async () => {
    await vm?.shutdown();
  });

  it(`runs ${CHUNKS} chunks for ${SECONDS} s: records/s > 0, AnonPages grew while it ran`, async () => {
    const v = vm as Vm;
    const before = memInfo(await v.serial.next((e) => memInfo(e) !== undefined, 10_000));
    const since = v.serial.cursor();
    await v.command(`bizzy ${CHUNKS} ${SECONDS}`, 60_000);
    const line = await v.serial.waitFor((e) => bizzyResult(e) !== undefined, 1000, since);
    const r = bizzyResult(line);
    expect(r?.ok, line.raw).toBe(true);
    if (!r?.ok) return;
    expect(r.run.chunks).toBe(CHUNKS);
    expect(r.run.chunkKiB).toBe(1024);
    expect(r.run.records).toBeGreaterThan(0);
    expect(r.run.recordsPerSecond).toBeGreaterThan(0);
    expect(r.run.elapsed).toBeGreaterThanOrEqual(SECONDS);
    // The largest AnonPages the guest reported while the workload ran.
    let peak = 0;
    for (let seq = since; ; seq++) {
      const e = await v.serial.waitFor((x) => x.seq >= seq && memInfo(x) !== undefined, 5000, seq).catch(() => undefined);
      if (!e) break;
      const m = memInfo(e);
      if (m && m.up <= r.run.up) peak = Math.max(peak, m.AnonPages);
      if ((m?.up ?? 0) > r.run.up) break;
      seq = e.seq;
    }
    expect(peak - (before?.AnonPages ?? 0)).toBeGreaterThan(CHUNKS * 1024 * 0.9);
  }, 120_000);

  it('refuses a bad chunk count with rc=1', async () => {
    await expect((vm as Vm).command('bizzy 0 1', 30_000)).rejects.toThrow(/rc=1/);
  });
});

// The guests of the source design's experiment had swap; ours get it from a
// scratch virtio-blk disk (startVm({ swapDisk })), used whole by the init.
describe('guest swap disk', () => {
  const GUEST_MIB = 256;
  const SWAP_MIB = 192;
  let vm: Vm | undefined;
  let dir: string | undefined;

  beforeAll(async () => {
    const [qemu, img] = [await qemuBinary(), await guestImage()];
    dir = mkdtempSync(join(tmpdir(), 'vub-swap-'));
    const swapDisk = createSwapDisk(join(dir, 'swap.img'), SWAP_MIB);
    vm = await startVm({
      qemu, kernel: img.kernel, initrd: img.initrd, memMiB: GUEST_MIB, swapDisk,
      balloon: { kind: 'stock' }, guest: { scenario: 'idle', reportSeconds: 1 },
    });
    await vm.ready();
  }, 180_000);

  afterAll(async () => {
    await vm?.shutdown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`swaps on /dev/vda: the whole ${SWAP_MIB} MiB disk is swap space`, async () => {
    const e = await (vm as Vm).serial.waitFor((x) => x.type === 'swap', 10_000);
    expect(e.fields.dev, e.raw).toBe('vda');
    // mkswap keeps the first page for its header.
    expect(Number(e.fields.kib)).toBe(SWAP_MIB * 1024 - 4);
  });

  it('a workload larger than guest RAM completes, and the guest swapped out and back in', async () => {
    const v = vm as Vm;
    const chunks = GUEST_MIB + 32;
    const before = guestSwap(await v.serial.next((x) => guestSwap(x) !== undefined, 10_000));
    const since = v.serial.cursor();
    await v.command(`bizzy ${chunks} 2`, 170_000);
    const r = bizzyResult(await v.serial.waitFor((x) => bizzyResult(x) !== undefined, 1000, since));
    expect(r?.ok).toBe(true);
    const after = guestSwap(await v.serial.next((x) => guestSwap(x) !== undefined, 10_000));
    // Over guest RAM by at least 32 MiB (8192 pages) plus what the kernel holds.
    expect((after?.pswpout ?? 0) - (before?.pswpout ?? 0)).toBeGreaterThan(8192);
    expect((after?.pswpin ?? 0) - (before?.pswpin ?? 0)).toBeGreaterThan(0);
  }, 180_000);
});
