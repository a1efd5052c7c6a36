// End-to-end rig: our daemon + the patched QEMU + the Debian guest, and the
// readings the e2e tests compare (QMP, the guest's serial reports, the
// daemon's control socket, QEMU's RssShmem).
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { ControlClient } from '../../src/control/client.js';
import type { DaemonStatus } from '../../src/control/status.js';
import {
  type BalloonChoice, balloonState, type GuestImage, guestImage, qemuBinary, runBuildScript, startVm, type Vm,
  type VubEvent,
} from '../../lab/vm/index.js';
import { DaemonProcess } from '../sim/daemon.js';

export const MiB = 1024 * 1024;
export const PAGES_PER_MIB = 256;

let artefacts: Promise<{ qemu: string; img: GuestImage }> | undefined;
/** The patched QEMU and the guest image, built (or found in the cache) once per test file. */
export function buildArtefacts(): Promise<{ qemu: string; img: GuestImage }> {
  artefacts ??= (async () => ({ qemu: await qemuBinary(), img: await guestImage() }))();
  return artefacts;
}

let patched: Promise<{ ko: string; img: GuestImage }> | undefined;
/**
 * The guest image with our patched virtio_balloon.ko (message queue,
 * qemu/guest/driver/), built (or found in the cache) once per test file.
 */
export function buildPatchedGuest(): Promise<{ ko: string; img: GuestImage }> {
  patched ??= (async () => {
    const ko = (await runBuildScript('qemu/guest/driver/build.sh')).split('\n').pop() ?? '';
    return { ko, img: await guestImage({ balloonKo: ko }) };
  })();
  return patched;
}

/** The guest's own balloon size (vmstat balloon_inflate - balloon_deflate), pages. */
export const guestBalloonPages = (e: VubEvent): number | undefined => {
  const b = balloonState(e);
  return b ? b.inflated - b.deflated : undefined;
};

export interface RigOptions {
  memMiB?: number;
  daemonArgs?: string[];
  /** chardev reconnect= seconds (QEMU reconnects to a restarted daemon). */
  reconnectSeconds?: number;
  pci?: boolean;
  scenario?: string;
  /** Boot the guest image with the patched virtio_balloon.ko (message queue) instead of the stock one. */
  patchedDriver?: boolean;
  /** Forward the guest kernel log as `VUB kmsg` lines. */
  kmsg?: boolean;
  /** Run the daemon as this uid:gid instead of root (test/sim/daemon.ts). */
  daemonAs?: { uid: number; gid: number };
}

export class Rig {
  private constructor(
    public daemon: DaemonProcess,
    public ctl: ControlClient,
    readonly vm: Vm,
    readonly memMiB: number,
  ) {}

  static async start(o: RigOptions = {}): Promise<Rig> {
    const { qemu, img: stock } = await buildArtefacts();
    const img = o.patchedDriver ? (await buildPatchedGuest()).img : stock;
    const memMiB = o.memMiB ?? 1024;
    const daemon = await DaemonProcess.start(o.daemonArgs ?? [], {}, undefined, o.daemonAs);
    const balloon: BalloonChoice = {
      kind: 'vhost-user', socketPath: daemon.socketPath, reconnectSeconds: o.reconnectSeconds, pci: o.pci,
    };
    let vm: Vm;
    try {
      vm = await startVm({
        qemu, kernel: img.kernel, initrd: img.initrd, memMiB, balloon,
        guest: { scenario: o.scenario ?? 'idle', reportSeconds: 1, kmsg: o.kmsg },
      });
    } catch (e) {
      await daemon.stop();
      throw e;
    }
    const ctl = await ControlClient.connect(daemon.controlPath);
    return new Rig(daemon, ctl, vm, memMiB);
  }

  status(): Promise<DaemonStatus> {
    return this.ctl.request<DaemonStatus>({ op: 'status' });
  }

  /** Polls the daemon's status until pred holds. */
  async waitStatus(pred: (s: DaemonStatus) => boolean, timeoutMs: number, what: string): Promise<DaemonStatus> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const s = await this.status();
      if (pred(s)) return s;
      if (performance.now() > deadline) {
        throw new Error(`daemon status: no ${what} within ${timeoutMs} ms (target ${s.targetBytes}, actual ${s.actualBytes}, balloon ${s.balloonBytes})`);
      }
      await sleep(100);
    }
  }

  setTarget(value: string): Promise<unknown> {
    return this.ctl.request({ op: 'set-target', value, owner: 'e2e' });
  }

  /** Waits until the guest itself reports a balloon of `pages`. */
  waitGuestBalloon(pages: number, timeoutMs = 60_000): Promise<VubEvent> {
    return this.vm.serial.waitFor((e) => guestBalloonPages(e) === pages, timeoutMs, this.vm.serial.cursor());
  }

  /** Touch `mib` of guest RAM and free it again, so the host holds those pages. */
  async touchAndFree(mib: number): Promise<void> {
    await this.vm.command(`alloc ${mib}`, 120_000);
    await this.vm.command('free', 60_000);
  }

  /** Replace the daemon by a new one on the same socket (QEMU reconnects). */
  async restartDaemon(signal: NodeJS.Signals, args: string[] = []): Promise<void> {
    this.ctl.close();
    await this.daemon.stop(signal, true);
    this.daemon = await DaemonProcess.start(args, {}, this.daemon.dir);
    this.ctl = await ControlClient.connect(this.daemon.controlPath);
  }

  async stop(): Promise<void> {
    this.ctl.close();
    await this.vm.shutdown();
    await this.daemon.stop();
  }
}
