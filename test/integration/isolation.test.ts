// Isolation between VMs in one host daemon: a noisy or hostile guest or
// frontend on one device must not crash, stall or slow the others. The
// noisy neighbour runs in a process of its own (test/sim/noisy.ts) so that
// its work never shares a thread with the measurement: the quiet VM's
// guest, here, inflates one 256-PFN buffer at a time (Linux's tell_host())
// and every acknowledgement's latency is taken, first alone, then while the
// neighbour does its worst; both are printed.
import { ChildProcess, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import type { DaemonStatus } from '../../src/control/status.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { PAGE } from '../sim/guest-memory.js';

const MiB = 1 << 20;
const NOISY_JS = resolve(import.meta.dirname, '..', '..', 'dist', 'test', 'sim', 'noisy.js');
/** The target: the other VM's inflate buffers acknowledged with a p99 under this. */
const P99_TARGET_MS = 5;

let daemon: DaemonProcess | undefined;
const guests: SimGuest[] = [];
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  for (const g of guests.splice(0)) g.close();
  if (daemon) expect(await daemon.stop(), 'daemon exits cleanly').toBe(0);
  daemon = undefined;
});

async function guest(socketPath: string, ramBytes = 256 * MiB): Promise<SimGuest> {
  const g = await SimGuest.start({ socketPath, ramBytes });
  guests.push(g);
  g.mem.touch(0, g.mem.usableEnd);
  return g;
}

/** The neighbour's process: ready after its handshake, go starts its scenario. */
class Noisy {
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

  static async start(socket: string, scenario: string, ramMiB = 1100): Promise<Noisy> {
    const child = spawn(process.execPath, [NOISY_JS, socket, scenario, String(ramMiB)], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(child);
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
}

interface Figures { n: number; p50: number; p99: number; max: number }

function figures(ms: number[]): Figures {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { n: s.length, p50: at(0.5), p99: at(0.99), max: s.at(-1)! };
}

const show = (f: Figures) => `n=${f.n} p50=${f.p50.toFixed(3)} ms p99=${f.p99.toFixed(3)} ms max=${f.max.toFixed(2)} ms`;

/**
 * Inflate one 256-PFN buffer at a time (the balloon deflated, unmeasured,
 * when it nears the guest's RAM) until `over()` and at least `min` samples;
 * returns each buffer's acknowledgement latency.
 */
async function ackLatencies(g: SimGuest, over: () => boolean, min: number): Promise<number[]> {
  const lat: number[] = [];
  const cap = Math.floor(g.mem.usableEnd / PAGE) - 4096;
  while (!over() || lat.length < min) {
    if (g.pages.size + 256 > cap) await g.deflate(g.pages.size, { updateSize: 'end' });
    await g.inflate(256, { onBatch: (ms) => lat.push(ms) });
  }
  return lat;
}

/** The quiet VM's latency alone for `aloneMs`, then while the neighbour's scenario runs. */
async function compare(label: string, quiet: SimGuest, noisy: Noisy, aloneMs = 1500): Promise<{ alone: Figures; noisy: Figures }> {
  const t = Date.now();
  const alone = figures(await ackLatencies(quiet, () => Date.now() - t >= aloneMs, 500));
  noisy.go();
  const during = figures(await ackLatencies(quiet, () => noisy.has('done') || noisy.has('stalled'), 200));
  const done = noisy.has('done') ? await noisy.state('done') : null;
  console.log(`[isolation] ${label}: other VM alone      ${show(alone)}`);
  console.log(`[isolation] ${label}: with the neighbour   ${show(during)}${done ? ` (neighbour done in ${Number(done.ms).toFixed(0)} ms)` : ''}`);
  return { alone, noisy: during };
}

async function status(vm: string): Promise<DaemonStatus> {
  return daemon!.request<DaemonStatus>({ op: 'status', vm });
}

// Timed (p99 against P99_TARGET_MS): when this shared 2-core machine is busy, the quiet VM's p99
// *alone* triples (seen: 1.5-2.4 against 0.5-0.7 ms) and one case in a run can miss. A retry, not a
// looser bound.
describe('a noisy neighbour does not slow the other VM down', { retry: 2 }, () => {
  it.each([
    ['1 GiB inflate + deflate x3, 256-PFN buffers one at a time (Linux)', 'inflate-1g'],
    ['1 GiB inflate + deflate x3, 256-PFN buffers, the whole inflate ring in flight', 'inflate-1g-ring'],
    ['1 GiB inflate + deflate x12, one buffer of 262,144 PFNs each', 'inflate-1g-huge'],
    ['100,000 messages, one per buffer, the message queue kept full', 'message-flood'],
    ['100,000 messages in 64 KiB buffers, flood after flood for 1.5 s', 'message-flood-big'],
    ['100,000 vhost-user messages from the frontend', 'vhost-flood'],
  ])('%s: the other VM\'s inflate buffers are acknowledged with p99 < 5 ms', { timeout: 180_000 }, async (label, scenario) => {
    daemon = await DaemonProcess.startHost(['--log-level', 'info']);
    const sa = await daemon.addVm('noisy', { 'stats-interval': 0 });
    const sb = await daemon.addVm('quiet', { 'stats-interval': 0 });
    const noisy = await Noisy.start(sa, scenario);
    const quiet = await guest(sb, 512 * MiB);
    const r = await compare(label, quiet, noisy);
    await noisy.state('done');
    expect(r.noisy.p99, `p99 with the neighbour (alone: ${r.alone.p99.toFixed(3)} ms)`).toBeLessThan(P99_TARGET_MS);
    const st = await status('quiet');
    expect(st.connected).toBe(true);
    expect(st.balloonBytes).toBe(quiet.pages.size * PAGE);
  });
});

describe('a frontend that stalls does not stall the daemon', { retry: 2 }, () => {
  it('half a message, then nothing: the other VM balloons at its usual latency; the rest of the message is handled when it comes', async () => {
    daemon = await DaemonProcess.startHost(['--log-level', 'info']);
    const sa = await daemon.addVm('stalled', { 'stats-interval': 0 });
    const sb = await daemon.addVm('quiet', { 'stats-interval': 0 });
    const a = await guest(sa, 64 * MiB);
    const b = await guest(sb);
    // GET_FEATURES header and half of a SET_CONFIG: both halves sent raw.
    const msg = Buffer.alloc(12 + 16);
    msg.writeUInt32LE(24, 0); // GET_CONFIG
    msg.writeUInt32LE(1, 4);
    msg.writeUInt32LE(16, 8);
    msg.writeUInt32LE(0, 12);
    msg.writeUInt32LE(4, 16);
    const { native } = await import('../../src/transport/native.js');
    expect(Number(native().vub_send_fds(a.fe.sock, msg, 7, null, 0))).toBe(7);
    const t = Date.now();
    const lat = figures(await ackLatencies(b, () => Date.now() - t > 1500, 500));
    console.log(`[isolation] half a message from the other frontend: ${show(lat)}`);
    expect(lat.p99).toBeLessThan(P99_TARGET_MS);
    expect(Number(native().vub_send_fds(a.fe.sock, msg.subarray(7), msg.length - 7, null, 0))).toBe(msg.length - 7);
    const reply = a.fe.recv();
    expect([reply.request, reply.payload.length]).toEqual([24, 16]);
    await a.inflate(256);
    expect((await status('stalled')).balloonBytes).toBe(256 * PAGE);
    expect((await status('quiet')).connected).toBe(true);
  });

  it('half a message, then the frontend closes: that connection is dropped, the other VM carries on', async () => {
    daemon = await DaemonProcess.startHost(['--log-level', 'info']);
    const sa = await daemon.addVm('stalled', { 'stats-interval': 0 });
    const sb = await daemon.addVm('quiet', { 'stats-interval': 0 });
    const a = await guest(sa, 64 * MiB);
    const b = await guest(sb);
    await b.inflate(512);
    const { native } = await import('../../src/transport/native.js');
    expect(Number(native().vub_send_fds(a.fe.sock, Buffer.from([1, 0, 0, 0, 1]), 5, null, 0))).toBe(5);
    a.dropConnection();
    await daemon.waitForLog((l) => l.msg === 'frontend disconnected' && l.vm === 'stalled');
    await b.inflate(512);
    const st = await status('quiet');
    expect([st.connected, st.balloonBytes]).toEqual([true, 1024 * PAGE]);
  });

  it('a frontend that never reads its replies: the daemon stops reading it, the other VM balloons at its usual latency', async () => {
    daemon = await DaemonProcess.startHost(['--log-level', 'info']);
    const sa = await daemon.addVm('deaf', { 'stats-interval': 0 });
    const sb = await daemon.addVm('quiet', { 'stats-interval': 0 });
    const noisy = await Noisy.start(sa, 'no-reply-reader', 64);
    const quiet = await guest(sb);
    const r = await compare('a frontend that never reads its replies', quiet, noisy);
    // Still stalled after the measurement: its replies fill its socket, the daemon waits for EPOLLOUT.
    const t = Date.now();
    const after = figures(await ackLatencies(quiet, () => Date.now() - t > 1000, 300));
    console.log(`[isolation] a frontend that never reads its replies, later: ${show(after)}`);
    expect(r.noisy.p99).toBeLessThan(P99_TARGET_MS);
    expect(after.p99).toBeLessThan(P99_TARGET_MS);
    expect((await status('deaf')).connected).toBe(true);
    noisy.child.kill('SIGKILL');
    await daemon.waitForLog((l) => l.msg === 'frontend disconnected' && l.vm === 'deaf');
    expect((await status('quiet')).connected).toBe(true);
  });
});

describe('a broken device is dropped alone', () => {
  async function twoVms() {
    daemon = await DaemonProcess.startHost(['--log-level', 'info']);
    const sa = await daemon.addVm('broken', { 'stats-interval': 0 });
    const sb = await daemon.addVm('quiet', { 'stats-interval': 0 });
    const b = await guest(sb);
    await b.inflate(1024);
    await b.deflate(256);
    return { sa, b, before: await status('quiet') };
  }

  async function quietUnchanged(b: SimGuest, before: DaemonStatus): Promise<void> {
    const mid = await status('quiet');
    expect(mid.connected).toBe(true);
    expect([mid.balloonBytes, mid.targetBytes, mid.counters.inflatedPages, mid.counters.deflatedPages])
      .toEqual([before.balloonBytes, before.targetBytes, before.counters.inflatedPages, before.counters.deflatedPages]);
    expect(mid.counters.badInput).toEqual(before.counters.badInput);
    // ... and it keeps ballooning.
    await b.inflate(512);
    await b.deflate(256);
    const after = await status('quiet');
    expect([after.connected, after.balloonBytes]).toEqual([true, before.balloonBytes + 256 * PAGE]);
  }

  it('by libvhost-user (a head beyond the descriptor table): that VM\'s connection goes, the other\'s status is unchanged and it balloons on', async () => {
    const { sa, b, before } = await twoVms();
    const a = await guest(sa, 64 * MiB);
    await a.inflate(256);
    const { postHeadOutOfRange } = await import('../sim/raw.js');
    postHeadOutOfRange(a, 'inflate');
    const err = await daemon!.waitForLog((l) => l.kind === 'device_error' && l.vm === 'broken');
    expect(String(err.message)).toMatch(/index .* is available|Guest says/);
    await daemon!.waitForLog((l) => l.msg === 'frontend disconnected' && l.vm === 'broken');
    await quietUnchanged(b, before);
    expect((await status('broken')).connected).toBe(false);
    // The broken VM's socket takes its next frontend.
    const again = await guest(sa, 64 * MiB);
    await again.inflate(256);
    expect((await status('broken')).connected).toBe(true);
  });

  it('by our firewall (a malformed vhost-user message): that VM\'s connection goes, the other\'s status is unchanged and it balloons on', async () => {
    const { sa, b, before } = await twoVms();
    const a = await guest(sa, 64 * MiB);
    const { VHOST_USER } = await import('../sim/frontend.js');
    const bad = Buffer.alloc(8);
    bad.writeUInt32LE(7, 0); // queue index 7 of 6
    bad.writeUInt32LE(128, 4);
    a.fe.send(VHOST_USER.SET_VRING_NUM, bad);
    const err = await daemon!.waitForLog((l) => l.kind === 'device_error' && l.vm === 'broken');
    expect(String(err.message)).toMatch(/invalid vhost-user message SET_VRING_NUM: queue index 7/);
    await daemon!.waitForLog((l) => l.msg === 'frontend disconnected' && l.vm === 'broken');
    await quietUnchanged(b, before);
  });

  it('a kick eventfd that is blocking and shared by two queues (each kick read twice) breaks nothing: it is made non-blocking, the other VM balloons on', async () => {
    const { sa, b, before } = await twoVms();
    const a = await guest(sa, 64 * MiB);
    const { eventfd, eventfdWrite, EFD_CLOEXEC } = await import('../../src/transport/libc.js');
    const { VHOST_USER } = await import('../sim/frontend.js');
    const { fcntlFlags } = await import('../sim/sys.js');
    const shared = Number(eventfd(0, EFD_CLOEXEC)); // blocking
    for (const q of [0, 1]) {
      const p = Buffer.alloc(8);
      p.writeBigUInt64LE(BigInt(q));
      a.fe.send(VHOST_USER.SET_VRING_KICK, p, [shared]);
    }
    a.fe.getU64(VHOST_USER.GET_FEATURES); // both handled
    expect(fcntlFlags(shared) & 0o4000, 'O_NONBLOCK set on the shared file').toBe(0o4000);
    // One write wakes both queues' watches; libvhost-user's own read would block on the second.
    for (let i = 0; i < 50; i++) {
      eventfdWrite(shared);
      await new Promise((r) => setTimeout(r, 2));
    }
    await quietUnchanged(b, before);
    expect((await status('broken')).connected).toBe(true);
    const { close } = await import('../sim/sys.js');
    close(shared);
  });
});

describe('one device\'s discard thread and memory table never touch another\'s mappings', () => {
  it('VM A removes and re-adds a region and replaces its whole table while its thread discards; B inflates: B keeps its data, A\'s discards hit only A\'s memfd', async () => {
    daemon = await DaemonProcess.startHost(['--log-level', 'info']);
    const sa = await daemon.addVm('a', { 'stats-interval': 0 });
    const sb = await daemon.addVm('b', { 'stats-interval': 0 });
    // A: two regions (NUMA layout); its rings live at the top of the upper one.
    const a = await SimGuest.start({ socketPath: sa, ramBytes: 1024 * MiB, layout: 'numa' });
    guests.push(a);
    const b = await guest(sb, 256 * MiB);
    a.mem.touch(0, a.mem.usableEnd, 0xa5); // the first byte of every page (the rings' area above is left alone)
    b.mem.touch(0, b.mem.usableEnd, 0x5b);
    const [lower, upper] = a.mem.regions as [typeof a.mem.regions[0], typeof a.mem.regions[0]];
    const { VHOST_USER } = await import('../sim/frontend.js');
    const setMemTable = () => {
      const regionBytes = (r: typeof lower) => {
        const x = Buffer.alloc(32);
        x.writeBigUInt64LE(BigInt(r.gpa), 0);
        x.writeBigUInt64LE(BigInt(r.size), 8);
        x.writeBigUInt64LE(a.mem.hostAddr + BigInt(r.offset), 16);
        x.writeBigUInt64LE(BigInt(r.offset), 24);
        return x;
      };
      const head = Buffer.alloc(8);
      head.writeUInt32LE(2, 0);
      a.fe.acked(VHOST_USER.SET_MEM_TABLE, Buffer.concat([head, regionBytes(lower), regionBytes(upper)]), [a.mem.fd, a.mem.fd]);
    };
    // A balloons 448 MiB of its lower region (contiguous: its thread gets long jobs at once).
    const aPfns = Array.from({ length: (448 * MiB) / PAGE }, (_, i) => 256 + i);
    const aInflate = (async () => {
      for (let i = 0; i < aPfns.length; i += 256 * 64) {
        await a.inflate(Math.min(256 * 64, aPfns.length - i), { pfns: aPfns.slice(i, i + 256 * 64), updateSize: 'end' });
        // While the thread works on it: the lower region out and back (a new mapping), or the whole table anew.
        if ((i / (256 * 64)) % 2 === 0) {
          a.memTable.sync([upper]);
          a.memTable.sync([lower, upper]);
        } else {
          setMemTable();
        }
      }
    })();
    // B meanwhile inflates and deflates, its pages checked.
    const everB = new Set<number>();
    for (let round = 0; round < 8; round++) {
      for (const p of await b.inflate(4096)) everB.add(p);
      await b.deflate(2048);
    }
    await aInflate;
    // Until the discards are over: the memfds' allocation stops changing for 1.5 s (pages wait at most 1 s).
    const settle = async (g: SimGuest) => {
      const deadline = Date.now() + 30_000;
      let last = -1;
      let since = Date.now();
      while (Date.now() < deadline && Date.now() - since < 1500) {
        const now = g.mem.allocatedBytes();
        if (now !== last) {
          last = now;
          since = Date.now();
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await Promise.all([settle(a), settle(b)]);
    const stB = await status('b');
    // B: every page it never ballooned has its data; its balloon is freed.
    const ballooned = new Set(b.balloon);
    let bad = 0;
    for (let pfn = 0; pfn * PAGE < b.mem.usableEnd; pfn++) {
      if (!everB.has(pfn) && b.mem.bytes[pfn * PAGE] !== 0x5b) bad++;
    }
    expect(bad, 'B pages never ballooned that lost their data').toBe(0);
    expect(b.mem.backedBytes(0, b.mem.usableEnd), 'B\'s balloon freed').toBeLessThanOrEqual(b.mem.usableEnd - ballooned.size * PAGE);
    for (const p of ballooned) expect(b.mem.isBacked(p * PAGE, PAGE)).toBe(false);
    expect(stB.balloonBytes).toBe(ballooned.size * PAGE);
    expect(stB.counters.badInput).toEqual({});
    // A: nothing outside its balloon was discarded (its upper region, the rest of the lower one).
    const aBallooned = new Set(a.balloon);
    let aBad = 0;
    for (let pfn = 0; pfn * PAGE < a.mem.usableEnd; pfn++) {
      if (!aBallooned.has(pfn) && a.mem.bytes[pfn * PAGE] !== 0xa5) aBad++;
    }
    expect(aBad, 'A pages outside its balloon that lost their data').toBe(0);
    const stA = await status('a');
    expect(stA.connected).toBe(true);
    // A's own balloon was freed (a chunk whose region was out at that moment fails and is counted).
    const freed = aPfns.length * PAGE - a.mem.backedBytes(aPfns[0]! * PAGE, aPfns.length * PAGE);
    console.log(`[isolation] A ballooned ${aPfns.length * PAGE / MiB} MiB, its table changed ${Math.ceil(aPfns.length / (256 * 64))} times meanwhile: `
      + `${(freed / MiB).toFixed(0)} MiB freed, ${stA.counters.badInput.discard_failed ?? 0} failed discards; B: ${ballooned.size} pages ballooned, every other page intact`);
    expect(freed).toBeGreaterThan(0);
  }, 120_000);
});
