// Keeping the weights for the balloons as they stand, not only for each
// decision's part: once the need is met and nothing is on the way, a VM
// whose balloon is ahead of its weighted share of all the balloons by a unit
// or more hands units to one that is behind by as much and can spare them.
// A VM is behind when, for instance, its memory was not spare yet when the
// need came (just freed: fresh-free.ts; stats stale) and the others gave in
// its place. Pure; the caller decides when its stats are fresh enough.

import { waterFill } from './water-fill.js';

export interface RebalanceVm {
  vm: string;
  weight: number;
  /** Balloon held or asked for (max of target and actual). */
  heldBytes: number;
  /** What it can still give that frees host memory (its spare less anything unbacked the balloon would take first). */
  giveableBytes: number;
  /** Everything it can spare on top of its balloon (cache + backed free), for its weighted share. */
  spareBytes: number;
  unitBytes: number;
}

export interface Move {
  from: string;
  to: string;
  bytes: number;
  /** The two VMs' weighted shares of all the balloons (bytes), for the record. */
  fromShareBytes: number;
  toShareBytes: number;
}

/**
 * The one move that most reduces the imbalance: from the VM furthest ahead
 * of its share to the one furthest behind that can give, in whole units
 * (the larger unit of the two), at most `maxBytes`. Null when no VM is a
 * unit ahead while another is a unit behind with a unit to give.
 */
export function findMove(vms: readonly RebalanceVm[], maxBytes: number): Move | null {
  const total = vms.reduce((n, v) => n + v.heldBytes, 0);
  if (total <= 0 || vms.length < 2) return null;
  const fair = waterFill(total, vms.map((v) => ({ key: v.vm, weight: v.weight, spare: v.heldBytes + Math.max(0, v.spareBytes) })));
  const gap = (v: RebalanceVm) => fair.get(v.vm)! - v.heldBytes;
  let ahead: RebalanceVm | null = null;
  let behind: RebalanceVm | null = null;
  for (const v of vms) {
    if (-gap(v) >= v.unitBytes && (!ahead || gap(v) < gap(ahead))) ahead = v;
    if (gap(v) >= v.unitBytes && v.giveableBytes >= v.unitBytes && (!behind || gap(v) > gap(behind))) behind = v;
  }
  if (!ahead || !behind) return null;
  const unit = Math.max(ahead.unitBytes, behind.unitBytes);
  const units = Math.floor(Math.min(-gap(ahead), gap(behind), behind.giveableBytes, maxBytes) / unit);
  if (units < 1) return null;
  return { from: ahead.vm, to: behind.vm, bytes: units * unit, fromShareBytes: fair.get(ahead.vm)!, toShareBytes: fair.get(behind.vm)! };
}
