// The ebizzy-like guest workload (native/workload/bizzy.c) in the real guest:
// the console command runs it, it prints its records, and its chunks are real
// anonymous memory while it runs (AnonPages grows, then falls back).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bizzyResult, guestImage, memInfo, qemuBinary, startVm, type Vm } from '../../src/vm/index.js';

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
