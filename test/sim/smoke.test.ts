// The simulated guest against the real daemon: connect as QEMU 7.2 would,
// negotiate like Linux 6.1, inflate 64 MiB and see the memfd range become
// holes, deflate, and read the config back.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DaemonProcess } from './daemon.js';
import { SimGuest } from './driver.js';
import { VHOST_USER, VHOST_USER_PROTOCOL_F } from './frontend.js';
import { PAGE } from './guest-memory.js';
import { VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC, bit } from './linux.js';

const MiB = 1 << 20;
let daemon: DaemonProcess;
let guest: SimGuest | undefined;

async function until(cond: () => boolean, ms = 2000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return cond();
}

beforeEach(async () => {
  daemon = await DaemonProcess.start(['--stats-interval', '0']);
});
afterEach(async () => {
  guest?.close();
  guest = undefined;
  expect(await daemon.stop(), 'daemon exit code').toBe(0);
});

describe('smoke', () => {
  it('negotiates, inflates 64 MiB into holes, deflates, reads config', async () => {
    guest = await SimGuest.start({ socketPath: daemon.socketPath, ramBytes: 256 * MiB });

    // What QEMU 7.2 and Linux 6.1 would agree on with this backend.
    for (const f of [VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC]) {
      expect(guest.negotiated & bit(f), `feature ${f}`).not.toBe(0n);
    }
    for (const f of [VHOST_USER_PROTOCOL_F.REPLY_ACK, VHOST_USER_PROTOCOL_F.SLAVE_REQ, VHOST_USER_PROTOCOL_F.CONFIG]) {
      expect(guest.protocol & bit(f), `protocol feature ${f}`).not.toBe(0n);
    }
    expect(guest.fe.sent).toContain(VHOST_USER.ADD_MEM_REG);
    expect(guest.roles.slice(0, 2)).toEqual(['inflate', 'deflate']);
    expect(guest.readConfig()).toMatchObject({ num_pages: 0, actual: 0 });

    const len = 64 * MiB;
    const top = guest.mem.usableEnd;
    guest.mem.touch(0, top);
    expect(guest.mem.isBacked(top - len, len)).toBe(true);

    const pfns = await guest.inflate(len / PAGE);
    expect(pfns).toHaveLength(len / PAGE);
    expect(Math.min(...pfns) * PAGE).toBe(top - len);
    // Discard may trail the acks by the daemon's flush delay.
    expect(await until(() => guest!.mem.backedBytes(top - len, len) === 0)).toBe(true);
    expect(guest.mem.backedBytes(0, top - len), 'RAM the guest did not name').toBe(top - len);
    expect(guest.readConfig().actual).toBe(len / PAGE);

    const back = await guest.deflate(len / PAGE);
    expect(back).toHaveLength(len / PAGE);
    guest.mem.touch(top - len, len, 0x5a);
    expect(guest.mem.isBacked(top - len, len)).toBe(true);
    expect(guest.mem.bytes[top - PAGE]).toBe(0x5a);
    expect(guest.readConfig()).toMatchObject({ num_pages: 0, actual: 0 });
    expect(guest.lostInterrupts, 'interrupts the device owed us').toBe(0);
  });
});
