// QEMU command line for the test/demo VM. Pure: no file system, no spawning.
import { type AccelChoice, accelArgs } from './accel.js';

export type BalloonChoice =
  | {
      kind: 'vhost-user';
      socketPath: string;
      /** Seconds between reconnect attempts when the backend goes away (chardev reconnect=). */
      reconnectSeconds?: number;
      /** `vhost-user-balloon-pci` instead of the alias `vhost-user-balloon`. */
      pci?: boolean;
      props?: Record<string, string | number | boolean>;
    }
  | {
      kind: 'stock';
      deflateOnOom?: boolean;
      freePageReporting?: boolean;
      props?: Record<string, string | number | boolean>;
    }
  | { kind: 'none' };

/** Guest side of the kernel command line, read by qemu/guest/init. */
export interface GuestParams {
  /** idle | hold:N | free:N | loop:N[:SECONDS[:COUNT]] (N in MiB) | bizzy:N1,N2,...:SECONDS[:DELAY] (N in 1 MiB chunks). */
  scenario?: string;
  /** Seconds between meminfo/balloon reports. */
  reportSeconds?: number;
  /** Forward the guest kernel log as `VUB kmsg` lines. */
  kmsg?: boolean;
  /** mkswap + swapon /dev/vda at boot (set by buildQemuArgs when a swap disk is given). */
  swap?: boolean;
  /** More kernel parameters, appended last. */
  extra?: string[];
}

export interface QemuArgsOptions {
  kernel: string;
  initrd: string;
  memMiB: number;
  cpus?: number;
  accel: AccelChoice;
  qmpSocket: string;
  balloon: BalloonChoice;
  guest?: GuestParams;
  /**
   * A raw file the guest uses whole as swap (virtio-blk, /dev/vda). Opened
   * with O_DIRECT (cache=none) so guest swap I/O does not fill QEMU's page
   * cache, which its memcg would be charged for.
   */
  swapDisk?: string;
  /**
   * Raw files as more virtio-blk disks, after the swap disk (vdb, vdc, ...
   * with a swap disk; vda, ... without), also cache=none: a guest's page
   * cache of them is guest RAM, not host page cache.
   */
  dataDisks?: string[];
  /** QEMU itself copies the serial output here (chardev logfile=). */
  serialLog?: string;
  /** Firmware search path (-L), in order. */
  firmwareDirs?: string[];
  extraArgs?: string[];
  /** Guest RAM on hugetlbfs pages of this size (MiB: 2 or 1024); the host must have them free. */
  hugePageMiB?: number;
}

export const DEFAULT_FIRMWARE_DIRS = ['/usr/share/seabios', '/usr/share/qemu'];
export const BALLOON_DEVICE_ID = 'balloon0';

// QEMU option values are comma-separated; a literal comma is written twice.
export function qemuOptValue(v: string): string {
  return v.replaceAll(',', ',,');
}

function props(p: Record<string, string | number | boolean> | undefined): string {
  if (!p) return '';
  return Object.entries(p)
    .map(([k, v]) => `,${k}=${typeof v === 'boolean' ? (v ? 'on' : 'off') : qemuOptValue(String(v))}`)
    .join('');
}

export function kernelCmdline(g: GuestParams = {}): string {
  const parts = ['console=ttyS0', 'quiet', 'panic=-1'];
  for (const [k, v] of [['scenario', g.scenario], ['report', g.reportSeconds]] as const) {
    if (v === undefined) continue;
    const s = String(v);
    if (!/^[A-Za-z0-9:.,]+$/.test(s)) throw new RangeError(`vub.${k}=${s}: only [A-Za-z0-9:.,] allowed`);
    parts.push(`vub.${k}=${s}`);
  }
  if (g.kmsg) parts.push('vub.kmsg=1');
  if (g.swap) parts.push('vub.swap=1');
  parts.push(...(g.extra ?? []));
  return parts.join(' ');
}

export function balloonArgs(b: BalloonChoice): string[] {
  switch (b.kind) {
    case 'none':
      return [];
    case 'stock': {
      const flags =
        (b.deflateOnOom ? ',deflate-on-oom=on' : '') + (b.freePageReporting ? ',free-page-reporting=on' : '');
      return ['-device', `virtio-balloon-pci,id=${BALLOON_DEVICE_ID}${flags}${props(b.props)}`];
    }
    case 'vhost-user': {
      const reconnect = b.reconnectSeconds !== undefined ? `,reconnect=${b.reconnectSeconds}` : '';
      const dev = b.pci ? 'vhost-user-balloon-pci' : 'vhost-user-balloon';
      return [
        '-chardev', `socket,id=vb,path=${qemuOptValue(b.socketPath)}${reconnect}`,
        '-device', `${dev},id=${BALLOON_DEVICE_ID},chardev=vb${props(b.props)}`,
      ];
    }
  }
}

export function swapDiskArgs(path: string): string[] {
  return [
    '-drive', `file=${qemuOptValue(path)},if=none,id=swap0,format=raw,cache=none,aio=threads,discard=unmap`,
    '-device', 'virtio-blk-pci,drive=swap0',
  ];
}

export function dataDiskArgs(paths: string[]): string[] {
  return paths.flatMap((p, i) => [
    '-drive', `file=${qemuOptValue(p)},if=none,id=data${i},format=raw,cache=none,aio=threads`,
    '-device', `virtio-blk-pci,drive=data${i}`,
  ]);
}

/** The guest's name of data disk i (virtio-blk disks are named in PCI order: the swap disk first). */
export function dataDiskName(i: number, withSwapDisk: boolean): string {
  return `vd${String.fromCharCode('a'.charCodeAt(0) + i + (withSwapDisk ? 1 : 0))}`;
}

export function buildQemuArgs(o: QemuArgsOptions): string[] {
  if (!Number.isInteger(o.memMiB) || o.memMiB < 64) throw new RangeError(`memMiB=${o.memMiB}: need an integer >= 64`);
  const cpus = o.cpus ?? 1;
  const serial = `stdio,id=ser0,signal=off${o.serialLog ? `,logfile=${qemuOptValue(o.serialLog)},logappend=off` : ''}`;
  return [
    '-nodefaults', '-no-user-config', '-no-reboot',
    '-display', 'none', '-monitor', 'none',
    ...accelArgs(o.accel),
    '-smp', String(cpus),
    '-m', `${o.memMiB}M`,
    // Guest RAM in a shared memfd: a vhost-user backend maps it, and the host
    // side of ballooning is visible as QEMU's RssShmem.
    '-object', `memory-backend-memfd,id=mem,size=${o.memMiB}M,share=on${o.hugePageMiB ? `,hugetlb=on,hugetlbsize=${o.hugePageMiB}M` : ''}`,
    '-machine', 'q35,memory-backend=mem',
    ...(o.firmwareDirs ?? DEFAULT_FIRMWARE_DIRS).flatMap((d) => ['-L', d]),
    '-kernel', o.kernel,
    '-initrd', o.initrd,
    '-append', kernelCmdline({ ...o.guest, ...(o.swapDisk ? { swap: true } : {}) }),
    '-chardev', serial,
    '-serial', 'chardev:ser0',
    '-qmp', `unix:${qemuOptValue(o.qmpSocket)},server=on,wait=off`,
    ...balloonArgs(o.balloon),
    ...(o.swapDisk ? swapDiskArgs(o.swapDisk) : []),
    ...dataDiskArgs(o.dataDisks ?? []),
    ...(o.extraArgs ?? []),
  ];
}
