// A noisy (or hostile) neighbour in a process of its own, for the isolation
// tests: a SimGuest on a VM's socket that, once told, does one thing as hard
// as it can. In its own process so that its work never runs on the thread
// that measures the other VM's latency.
//
//   node dist/test/sim/noisy.js SOCKET SCENARIO [RAM_MIB]
//
// stdout: one JSON line {"state":"ready"} after the handshake, then (after a
// line "go" on stdin) {"state":"done", ...figures} when the scenario is over;
// a scenario that stalls on purpose prints {"state":"stalled"} and waits to
// be killed. Scenarios:
//   inflate-1g        1 GiB inflate the Linux way (256-PFN buffers, one at a time),
//                     then its deflate; three times
//   inflate-1g-ring   the same with the whole inflate ring in flight
//   inflate-1g-huge   1 GiB in one buffer of 262,144 PFNs (1 MiB, the most the device
//                     reads), deflated in one; twelve times
//   message-flood     100,000 one-message buffers on the message queue, the ring kept full
//   message-flood-big 100,000 messages in 64 KiB buffers (16,384 each), the ring kept
//                     full; one flood after the other for 1.5 s
//   vhost-flood       100,000 vhost-user messages (GET_FEATURES), replies read every 64
//   no-reply-reader   GET_CONFIG requests, their replies never read (blocks once the socket is full)
import { createInterface } from 'node:readline';
import { VHOST_USER } from './frontend.js';
import { SimGuest } from './driver.js';
import { PAGE } from './guest-memory.js';

const MiB = 1 << 20;
const [socketPath, scenario, ramArg] = process.argv.slice(2);
if (!socketPath || !scenario) {
  process.stderr.write('usage: noisy.js SOCKET SCENARIO [RAM_MIB]\n');
  process.exit(2);
}
const say = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);

const ramBytes = Number(ramArg ?? 1100) * MiB;
const g = await SimGuest.start({ socketPath, ramBytes });
g.mem.touch(0, g.mem.usableEnd);
say({ state: 'ready' });
await new Promise<void>((resolve) => {
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (l) => {
    if (l.trim() === 'go') {
      rl.close();
      resolve();
    }
  });
});

const t0 = performance.now();
const GiBPages = (1 << 30) / PAGE;
const pfnsOf = (n: number) => Array.from({ length: n }, (_, i) => 1024 + i);

async function ringFull(role: 'inflate' | 'message', buffers: number, seg: () => { gpa: number; len: number }): Promise<void> {
  const ring = g.ring(role);
  const inFlight: number[] = [];
  for (let i = 0; i < buffers; i++) {
    // A buffer reaped earlier (with another's wait) has freed its descriptor already.
    while (ring.freeDescriptors === 0) await ring.waitFor(inFlight.shift()!, 30_000);
    inFlight.push(ring.add([seg()]));
    ring.kick();
  }
  for (const h of inFlight) await ring.waitFor(h, 30_000);
}

/** Inflate scenarios run three times, the balloon deflated (the Linux way) in between. */
const ROUNDS = 3;

switch (scenario) {
  case 'inflate-1g':
    for (let i = 0; i < ROUNDS; i++) {
      await g.inflate(GiBPages, { pfns: pfnsOf(GiBPages), updateSize: 'end' });
      await g.deflate(GiBPages, { updateSize: 'end' });
    }
    break;
  case 'inflate-1g-ring': {
    // One buffer per ring slot, rewritten only after it came back.
    const ring = g.ring('inflate');
    const bufs = Array.from({ length: ring.num }, () => g.mem.alloc(1024, 64));
    for (let i = 0; i < ROUNDS; i++) {
      const pfns = pfnsOf(GiBPages);
      let next = 0;
      let slot = 0;
      await ringFull('inflate', GiBPages / 256, () => {
        const at = bufs[slot++ % bufs.length]!;
        const b = g.mem.slice(at, 1024);
        for (let k = 0; k < 256; k++) b.writeUInt32LE(pfns[next++]!, 4 * k);
        return { gpa: at, len: 1024 };
      });
      g.pages.add(pfns);
      g.writeActual();
      await g.deflate(GiBPages, { updateSize: 'end' });
    }
    break;
  }
  case 'inflate-1g-huge': {
    // The most one buffer may carry (1 MiB of PFNs): 1 GiB in one go, then
    // back out in one go.
    const buf = Buffer.from(Uint32Array.from(pfnsOf(GiBPages)).buffer);
    const at = g.mem.alloc(buf.length, 64);
    buf.copy(g.mem.slice(at, buf.length));
    for (let i = 0; i < 4 * ROUNDS; i++) {
      for (const role of ['inflate', 'deflate'] as const) {
        const head = g.ring(role).add([{ gpa: at, len: buf.length }]);
        g.ring(role).kick();
        await g.ring(role).waitFor(head, 30_000);
      }
    }
    break;
  }
  case 'message-flood':
  case 'message-flood-big': {
    const per = scenario === 'message-flood' ? 1 : 16384;
    const msgs = Buffer.alloc(4 * per);
    for (let i = 0; i < per; i++) msgs.writeUInt32LE(i % 2 ? 1 : 9, 4 * i); // half MSG_PRESSURE, half unknown
    const at = g.scratch(msgs);
    // The big buffers' flood is over in a few ms: one after the other for 1.5 s, for a measurement.
    do await ringFull('message', Math.ceil(100_000 / per), () => ({ gpa: at, len: msgs.length }));
    while (per > 1 && performance.now() - t0 < 1500);
    break;
  }
  case 'vhost-flood':
    for (let sent = 0; sent < 100_000; sent += 64) {
      for (let i = 0; i < 64; i++) g.fe.send(VHOST_USER.GET_FEATURES);
      for (let i = 0; i < 64; i++) g.fe.recv();
    }
    break;
  case 'no-reply-reader': {
    const p = Buffer.alloc(12 + 16);
    p.writeUInt32LE(16, 4);
    say({ state: 'stalled' });
    for (;;) g.fe.send(VHOST_USER.GET_CONFIG, p); // blocks for good once the daemon stops reading
  }
  default:
    process.stderr.write(`unknown scenario ${scenario}\n`);
    process.exit(2);
}
say({ state: 'done', ms: performance.now() - t0 });
g.close();
process.exit(0);
