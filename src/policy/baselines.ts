// Two published auto-ballooning algorithms, as baselines for our host-wide
// policy (host.ts), written from their rules as pure functions. Sizes are
// guest memory sizes (RAM - balloon), as both algorithms reason in them; the
// callers convert to balloon targets.
//
// oVirt MOM (doc/balloon.rules): every 15 s; when the host's free memory is
// below 20 % every guest shrinks by at most 5 % of its size per cycle, down
// to its used memory plus a free share that shrinks with host pressure (20 %
// of its size at 20 % host free, negative below 5 %); otherwise every
// ballooned guest grows by 5 % per cycle. Changes under 0.25 % are skipped.
//
// Proxmox VE (PVE::AutoBalloon::compute_alg1, driven by pvestatd): every
// 10 s, aim at 80 % host memory use; the change ("goal") is split by shares
// over the guests' memory above their minimum, at most 100 MiB per guest
// per round. Growth goes first to guests under pressure (free memory below
// 25 % of their minimum), shrinking first to those with more free memory.

export interface BaselineVm {
  vm: string;
  /** Guest RAM: its largest size. */
  ramBytes: number;
  /** Its size now: RAM - balloon. */
  sizeBytes: number;
  /** The smallest size allowed (floor); 0 for none. */
  minBytes: number;
  /** Guest free memory (MemFree), if known. */
  freeBytes: number | null;
  /** Proxmox shares (default 1000); MOM has none. */
  shares?: number;
}

export interface HostMemory {
  totalBytes: number;
  /** Free (MOM) or unused (Proxmox: total - used) host memory. */
  freeBytes: number;
}

export const MOM = Object.freeze({
  intervalMs: 15_000, pressureThreshold: 0.2, pressureCritical: 0.05, minGuestFree: 0.2, maxChange: 0.05, minChange: 0.0025,
});

/** MOM's new sizes for the guests it changes. */
export function momStep(host: HostMemory, vms: readonly BaselineVm[]): Map<string, number> {
  const hostFree = host.totalBytes > 0 ? host.freeBytes / host.totalBytes : 1;
  const out = new Map<string, number>();
  const bigEnough = (v: BaselineVm, size: number) => Math.abs(size - v.sizeBytes) > MOM.minChange * v.sizeBytes;
  const shrinking = hostFree < MOM.pressureThreshold;
  const guestFree = hostFree <= MOM.pressureCritical ? hostFree - 0.05 : MOM.minGuestFree * (shrinking ? hostFree / MOM.pressureThreshold : 1);
  for (const v of vms) {
    if (v.freeBytes === null) continue;
    const used = v.sizeBytes - v.freeBytes;
    // MOM keeps the guest at least at min(configured minimum, used + free share).
    const low = Math.min(v.minBytes > 0 ? v.minBytes : Number.POSITIVE_INFINITY, used + guestFree * v.sizeBytes);
    if (shrinking) {
      const size = Math.max(v.sizeBytes * (1 - MOM.maxChange), low);
      if (size <= v.sizeBytes && bigEnough(v, size)) out.set(v.vm, Math.floor(size));
    } else if (v.sizeBytes < v.ramBytes) {
      const size = Math.max(Math.min(v.ramBytes, v.sizeBytes * (1 + MOM.maxChange)), low);
      if (bigEnough(v, size)) out.set(v.vm, Math.floor(Math.min(size, v.ramBytes)));
    }
  }
  return out;
}

export const PROXMOX = Object.freeze({ intervalMs: 10_000, targetUse: 0.8, maxChangeBytes: 100 * 2 ** 20, minGoalBytes: 10 * 2 ** 20 });

/** Proxmox's goal: how much guest memory may grow (> 0) or must shrink (< 0) to reach 80 % host use. */
export const proxmoxGoal = (host: HostMemory): number => Math.floor(host.totalBytes * PROXMOX.targetUse - (host.totalBytes - host.freeBytes));

/** Proxmox's new sizes for the guests it changes. */
export function proxmoxStep(host: HostMemory, vms: readonly BaselineVm[]): Map<string, number> {
  const goal = proxmoxGoal(host);
  const size = new Map<string, number>();
  const eligible = vms.filter((v) => v.minBytes > 0 && (v.shares ?? 1000) > 0);
  const pressured = eligible.filter((v) => !(v.freeBytes !== null && v.freeBytes > v.minBytes * 0.25 && v.sizeBytes >= v.minBytes));
  const roomy = eligible.filter((v) => !pressured.includes(v));
  const cur = (v: BaselineVm) => size.get(v.vm) ?? v.sizeBytes;

  /** Move `bytes` (signed) over `list` by shares, at most maxChange per guest from its size; returns what is left. */
  const change = (list: readonly BaselineVm[], bytes: number): number => {
    let rest = bytes;
    const done = new Set<string>();
    for (let progress = true; rest !== 0 && progress;) {
      progress = false;
      const open = list.filter((v) => !done.has(v.vm));
      if (open.length === 0) break;
      const sharesTotal = open.reduce((n, v) => n + (v.shares ?? 1000), 0);
      const allocNew = open.reduce((n, v) => n + cur(v) - v.minBytes, 0) + rest;
      let changed = 0;
      for (const v of open) {
        const desired = Math.min(v.ramBytes, Math.max(v.minBytes, v.minBytes + Math.floor((allocNew / sharesTotal) * (v.shares ?? 1000))));
        let next: number;
        if (bytes > 0 && desired > v.sizeBytes) next = Math.min(desired, v.sizeBytes + PROXMOX.maxChangeBytes);
        else if (desired < v.sizeBytes) next = Math.max(desired, v.sizeBytes - PROXMOX.maxChangeBytes);
        else {
          done.add(v.vm);
          continue;
        }
        const delta = next - cur(v);
        if (delta !== 0) {
          size.set(v.vm, next);
          changed += delta;
          progress = true;
        }
      }
      rest -= changed;
    }
    return rest;
  };

  if (goal > PROXMOX.minGoalBytes) {
    const rest = change(pressured, goal);
    if (rest >= goal) change(eligible, rest);
  } else if (goal < -PROXMOX.minGoalBytes) {
    const rest = change(roomy, goal);
    if (rest <= goal) change(eligible, rest);
  }
  for (const [vm, s] of size) if (s === vms.find((v) => v.vm === vm)!.sizeBytes) size.delete(vm);
  return size;
}
