// A hostile frontend: messages libvhost-user 7.2 would trust (and crash on,
// or leak fds, or exit(0) on) are refused by native/vub-vhost-check.c before
// it sees them. Each one is a device_error with a reason naming the message,
// the connection is dropped, no fd stays behind, and the next frontend works.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import { DaemonProcess } from '../sim/daemon.js';
import { SimGuest } from '../sim/driver.js';
import { BackendChannel, Frontend, VHOST_USER } from '../sim/frontend.js';
import { GuestMemory } from '../sim/guest-memory.js';
import { close } from '../sim/sys.js';
import { backendInit } from '../sim/vhost-setup.js';

let daemon: DaemonProcess;
let fdsBefore: number;

beforeAll(async () => {
  daemon = await DaemonProcess.start(['--stats-interval', '0']);
  fdsBefore = daemon.fds().length;
});
afterAll(async () => {
  expect(await daemon.stop()).toBe(0);
});

const u32s = (...v: number[]) => Buffer.from(Uint32Array.from(v).buffer);
const u64s = (...v: bigint[]) => Buffer.from(BigUint64Array.from(v).buffer);
/** VhostUserMemoryRegion: gpa, size, userspace_addr, mmap_offset. */
const region = (gpa: bigint, size: bigint) => u64s(gpa, size, 0x7f0000000000n + gpa, 0n);

interface Case {
  name: string;
  send: (fe: Frontend, mem: GuestMemory) => void;
  reason: string;
}

const cases: Case[] = [
  {
    name: 'a queue index beyond the device',
    send: (fe) => fe.send(VHOST_USER.SET_VRING_NUM, u32s(7, 256)),
    reason: 'invalid vhost-user message SET_VRING_NUM: queue index 7 >= 6',
  },
  {
    name: 'a queue size that is not a power of two',
    send: (fe) => fe.send(VHOST_USER.SET_VRING_NUM, u32s(0, 100)),
    reason: 'SET_VRING_NUM: queue size 100 is not a power of two <= 32768',
  },
  {
    // (An inner size of 0xffff in a 268-byte request is answered, refused:
    // test/device/hardening-protocol.test.ts.)
    name: 'GET_CONFIG shorter than its header',
    send: (fe) => fe.send(VHOST_USER.GET_CONFIG, u32s(0, 16)),
    reason: 'GET_CONFIG: 8 bytes (a config header and at most 256 config bytes)',
  },
  {
    name: 'SET_CONFIG beyond the config region',
    send: (fe) => fe.send(VHOST_USER.SET_CONFIG, Buffer.concat([u32s(250, 16, 0), Buffer.alloc(16)])),
    reason: 'SET_CONFIG: config offset 250 size 16',
  },
  {
    name: 'SET_MEM_TABLE claiming 9 regions',
    send: (fe, mem) => fe.send(VHOST_USER.SET_MEM_TABLE, Buffer.concat([u32s(9, 0), region(0n, 4096n)]), [mem.fd]),
    reason: 'SET_MEM_TABLE: 9 regions (at most 8)',
  },
  {
    name: 'a region larger than its memfd (SIGBUS on access)',
    send: (fe, mem) => fe.send(VHOST_USER.ADD_MEM_REG, Buffer.concat([Buffer.alloc(8), region(0n, BigInt(mem.size) * 2n)]), [mem.fd]),
    reason: 'past the end of the file',
  },
  {
    name: 'regions overlapping in guest-physical space',
    send: (fe, mem) => {
      const half = BigInt(mem.size / 2);
      const two = Buffer.concat([u32s(2, 0), region(0n, half + 4096n), u64s(half, half, 0x7f0000000000n + half, half)]);
      fe.send(VHOST_USER.SET_MEM_TABLE, two, [mem.fd, mem.fd]);
    },
    reason: 'SET_MEM_TABLE: regions 0 and 1 overlap',
  },
  {
    name: 'fds on a message that takes none (libvhost-user leaks them)',
    send: (fe, mem) => fe.send(VHOST_USER.SET_OWNER, Buffer.alloc(0), [mem.fd, mem.fd]),
    reason: 'SET_OWNER: 2 fds, want 0',
  },
  {
    name: 'a kick fd that is not an eventfd',
    send: (fe, mem) => fe.send(VHOST_USER.SET_VRING_KICK, u64s(0n), [mem.fd]),
    reason: 'SET_VRING_KICK: fd is not an eventfd',
  },
  {
    name: 'ring addresses outside guest RAM',
    send: (fe, mem) => {
      fe.send(VHOST_USER.ADD_MEM_REG, Buffer.concat([Buffer.alloc(8), region(0n, BigInt(mem.size))]), [mem.fd]);
      fe.send(VHOST_USER.SET_VRING_NUM, u32s(0, 256));
      const top = 0x7f0000000000n + BigInt(mem.size);
      // struct vhost_vring_addr: index, flags, desc, used, avail, log: 4 KiB of descriptors in the last 2 KiB.
      fe.send(VHOST_USER.SET_VRING_ADDR, Buffer.concat([u32s(0, 0), u64s(top - 2048n, top - 8192n, top - 12288n, 0n)]));
    },
    reason: 'SET_VRING_ADDR: queue 0: descriptor table',
  },
  {
    name: 'postcopy',
    send: (fe) => fe.send(28 /* POSTCOPY_ADVISE */),
    reason: 'POSTCOPY_ADVISE: postcopy is not supported',
  },
  {
    name: 'a request libvhost-user does not know',
    send: (fe) => fe.send(99),
    reason: 'invalid vhost-user message request 99: unsupported request',
  },
];

describe('vhost-user message firewall', () => {
  for (const c of cases) {
    it(`refuses ${c.name}`, async () => {
      const mem = new GuestMemory(4 << 20, 1 << 20);
      const fe = Frontend.connect(daemon.socketPath);
      const { channel, theirEnd } = BackendChannel.pair();
      try {
        backendInit(fe, theirEnd);
        close(theirEnd);
        c.send(fe, mem);
        const line = await daemon.waitForLog((l) => l.msg === 'frontend disconnected' && String(l.reason).includes(c.reason));
        expect(String(line.reason)).toMatch(/^device error: invalid vhost-user message /);
      } finally {
        fe.close();
        channel.close();
        mem.close();
      }
      await new Promise((r) => setTimeout(r, 50));
      expect(daemon.fds().length, 'no fd of the frontend stays in the daemon').toBe(fdsBefore);
      expect(daemon.guestMappings()).toBe(0);
    });
  }

  it('counts each as a device error and serves a well-behaved frontend after them', async () => {
    const guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 64 << 20 });
    try {
      await guest.inflate(64);
      const c = await ControlClient.connect(daemon.controlPath);
      const st = await c.request<DaemonStatus>({ op: 'status' });
      c.close();
      expect(st.counters.badInput.device_error).toBe(cases.length);
      expect(st.balloonBytes).toBe(64 * 4096);
    } finally {
      guest.close();
    }
  });
});
