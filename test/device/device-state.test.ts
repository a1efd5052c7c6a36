// The vhost-user device state transfer between two real daemons, with the
// frontend's half as our QEMU patch does it (test/sim/device-state.ts): the
// page set and the hold go from the source's daemon to the destination's,
// which frees exactly those pages in RAM that arrived fully allocated. And
// the hostile or broken frontend: transfers out of order, a phase nobody
// knows, damaged or oversized state, a frontend that never reads.
import { closeSync, readdirSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import { DaemonProcess } from '../sim/daemon.js';
import {
  checkDeviceState, LOAD, loadState, SAVE, saveState, setDeviceStateFd, VHOST_USER_PROTOCOL_F_DEVICE_STATE,
} from '../sim/device-state.js';
import { SimGuest } from '../sim/driver.js';
import { QEMU_7_2_PROTOCOL_MASK } from '../sim/frontend.js';
import { PAGE } from '../sim/guest-memory.js';
import { CONFIG_OFFSET_NUM_PAGES } from '../sim/linux.js';
import { close, pipe, setPipeSize } from '../sim/sys.js';
import { sleep } from '../sim/wait.js';

const MiB = 1 << 20;
const RAM = 64 * MiB;
/** QEMU 7.2 with our patches: its mask plus DEVICE_STATE. */
const PATCHED_MASK = QEMU_7_2_PROTOCOL_MASK | (1n << BigInt(VHOST_USER_PROTOCOL_F_DEVICE_STATE));
const daemons: DaemonProcess[] = [];
const guests: SimGuest[] = [];

afterEach(async () => {
  for (const g of guests.splice(0)) g.close();
  for (const d of daemons.splice(0)) expect(await d.stop(), 'daemon exits cleanly').toBe(0);
});

async function daemon(): Promise<DaemonProcess> {
  const d = await DaemonProcess.start(['--stats-interval', '0', '--no-page-reporting']);
  daemons.push(d);
  return d;
}

async function guest(d: DaemonProcess, o: { noQueues?: boolean; protocolMask?: bigint } = {}): Promise<SimGuest> {
  const g = await SimGuest.start({ socketPath: d.socketPath, ramBytes: RAM, protocolMask: PATCHED_MASK, ...o });
  guests.push(g);
  return g;
}

async function setTarget(d: DaemonProcess, value: string, owner?: string): Promise<void> {
  const ctl = await ControlClient.connect(d.controlPath);
  try {
    await ctl.request({ op: 'set-target', value, ...(owner ? { owner } : {}) });
  } finally {
    ctl.close();
  }
}

/** The daemon's device state threads (native/vub-state.c names them). */
const stateThreads = (d: DaemonProcess): number => readdirSync(`/proc/${d.child.pid}/task`)
  .filter((t) => { try { return readFileSync(`/proc/${d.child.pid}/task/${t}/comm`, 'utf8').trim() === 'vub-state'; } catch { return false; } }).length;

/** Pages of `pfns` whose memory is backed in `g`'s memfd. */
const backedOf = (g: SimGuest, pfns: number[]): number => pfns.filter((p) => g.mem.backedBytes(p * PAGE, PAGE) > 0).length;

describe('device state transfer (migration) between two daemons', () => {
  it('the page set and the hold move: the destination frees exactly the source\'s ballooned pages in RAM that arrived allocated', async () => {
    const srcD = await daemon();
    const src = await guest(srcD);
    expect(src.protocol & (1n << 19n), 'DEVICE_STATE offered and negotiated').not.toBe(0n);
    await setTarget(srcD, '16M', 'operator');
    // Scattered pages too: every other page of 4 MiB, then 12 MiB from the driver.
    const scattered = Array.from({ length: 512 }, (_, i) => 1000 + 2 * i);
    await src.inflate(scattered.length, { pfns: scattered });
    const rest = await src.inflate((16 * MiB) / PAGE - scattered.length);
    const ballooned = [...scattered, ...rest];
    src.pause(); // the migration's stop: vhost_dev_stop()
    const { state, check } = saveState(src.fe);
    expect(check, 'CHECK_DEVICE_STATE after the save').toBe(0n);
    await srcD.waitForLog((l) => l.msg === 'migration: the balloon\'s page set and hold go to the destination');

    // The destination: all of its RAM allocated, as QEMU's incoming RAM leaves it.
    const dstD = await daemon();
    const dst = await guest(dstD, { noQueues: true });
    dst.mem.touch(0, RAM - 8 * MiB);
    expect(loadState(dst.fe, state), 'CHECK_DEVICE_STATE after the load').toBe(0n);
    // post_load: actual, then num_pages, both of type MIGRATION; then the guest runs.
    dst.writeActual(ballooned.length, 1);
    const np = Buffer.alloc(4);
    np.writeUInt32LE(ballooned.length);
    dst.setConfig(CONFIG_OFFSET_NUM_PAGES, np, 1);
    dst.startQueues();
    const end = Date.now() + 10_000;
    while (backedOf(dst, ballooned) > 0 && Date.now() < end) await sleep(20);
    expect(backedOf(dst, ballooned), 'every page the source ballooned is freed here').toBe(0);
    const others = [999, 1001, 1003, 2023, 4000].filter((p) => !ballooned.includes(p));
    expect(backedOf(dst, others), 'pages the source did not balloon stay').toBe(others.length);
    const s = await dstD.status();
    expect([s.balloonBytes, s.targetBytes, s.mode, s.hold?.owner]).toEqual([16 * MiB, 16 * MiB, 'manual', 'operator']);
    expect(dstD.logs.some((l) => String(l.msg).startsWith('incoming migration: the guest names its balloon again')), 'no renaming: every page is named').toBe(false);
    expect(dst.readConfig().num_pages, 'the guest is asked for its balloon as it is, no dip').toBe(ballooned.length);
  });

  it('broken or hostile transfers get a non-zero answer, are counted, and the daemon serves on', async () => {
    const d = await daemon();
    const g = await guest(d, { noQueues: true });
    expect(checkDeviceState(g.fe), 'CHECK_DEVICE_STATE without a transfer').not.toBe(0n);
    const [rd, wr] = pipe();
    expect(setDeviceStateFd(g.fe, SAVE, 7, wr) & 0xffn, 'a phase no spec defines').not.toBe(0n);
    expect(setDeviceStateFd(g.fe, 5, 0, wr) & 0xffn, 'a direction no spec defines').not.toBe(0n);
    closeSync(rd);
    closeSync(wr);
    const garbage = Buffer.from('VUBS but not really a state');
    expect(loadState(g.fe, garbage), 'damaged state').not.toBe(0n);
    const good = saveState(g.fe);
    expect(good.check).toBe(0n);
    const flipped = Buffer.from(good.state);
    flipped[flipped.length - 9] ^= 0x40; // inside the runs or header: the checksum catches it
    expect(loadState(g.fe, flipped), 'a flipped bit').not.toBe(0n);
    expect(loadState(g.fe, Buffer.alloc(65 * MiB)), 'more than 64 MiB').not.toBe(0n);
    const s = await d.status();
    expect(s.counters.badInput.bad_device_state, 'the two bad states that reached the decoder').toBe(2);
    expect(s.connected).toBe(true);
    // The same connection goes on: a good state is taken.
    expect(loadState(g.fe, good.state)).toBe(0n);
    g.startQueues();
    await setTarget(d, '4M');
    expect(await g.followTarget()).toBe((4 * MiB) / PAGE);
  });

  it('a frontend that never reads the saved state and goes away leaves no thread behind; the next frontend is served', async () => {
    const d = await daemon();
    const g = await guest(d);
    // More runs than a small pipe holds: every other page.
    const pfns = Array.from({ length: 4000 }, (_, i) => 2000 + 2 * i);
    await g.inflate(pfns.length, { pfns });
    g.pause();
    const [rd, wr] = pipe();
    setPipeSize(wr, 4096);
    expect(setDeviceStateFd(g.fe, SAVE, 0, wr) & 0xffn).toBe(0n);
    closeSync(wr);
    await sleep(300); // the writer fills the pipe and waits
    expect(stateThreads(d), 'the writer waits on the full pipe').toBe(1);
    g.close();
    close(rd);
    const end = Date.now() + 5_000;
    while (stateThreads(d) > 0 && Date.now() < end) await sleep(50);
    expect(stateThreads(d), 'the writer stopped with the connection').toBe(0);
    const next = await guest(d);
    await setTarget(d, '2M');
    expect(await next.followTarget()).toBe((2 * MiB) / PAGE);
  });

  it('without DEVICE_STATE negotiated (stock QEMU 7.2) the requests are refused as a broken device, alone', async () => {
    const d = await daemon();
    const g = await guest(d, { noQueues: true, protocolMask: QEMU_7_2_PROTOCOL_MASK });
    const [rd, wr] = pipe();
    expect(() => setDeviceStateFd(g.fe, LOAD, 0, rd)).toThrow();
    closeSync(rd);
    closeSync(wr);
    await d.waitForLog((l) => String(l.message ?? l.msg).includes('DEVICE_STATE was not negotiated') || JSON.stringify(l).includes('DEVICE_STATE was not negotiated'));
    const next = await guest(d);
    await setTarget(d, '2M');
    expect(await next.followTarget()).toBe((2 * MiB) / PAGE);
  });
});
