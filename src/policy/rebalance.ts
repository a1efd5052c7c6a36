// Keeping the weights for the balloons as they stand, not only for each
// decision's part: once the need is met and nothing is on the way, units move
// from the VM furthest ahead of its weighted share of all the balloons to the
// one furthest behind that can spare them, when that brings both closer to
// their shares. A VM is behind when, for instance, its memory was not spare
// yet when the need came (just freed: fresh-free.ts; stats stale) and the
// others gave in its place. Pure; the caller decides when its stats are
// fresh enough.

import { waterFill } from './water-fill.js';

export interface RebalanceVm {
  vm: string;
  weight: number;
  /** Balloon held or asked for (max of target and actual). */
  heldBytes: number;
  /** What it can still give that frees host memory (its spare less anything unbacked the balloon would take first). */
  giveableBytes: number;
  /** Everything it can spare on top of its balloon (cache + backed free + what the balloon gave back unbacked: returned.ts), for its weighted share. */
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
 * of its share (by a) to the one furthest behind that can give (by b), in
 * whole units u (the larger unit of the two), at most `maxBytes`. k units
 * leave gaps a - ku and b - ku, so the squared gaps are least at ku = (a + b)
 * / 2: k is that rounded, and a move needs a + b >= 1.5 u. A move may pass a
 * share, never so far that the reverse move would pay (that needs the gaps
 * it leaves to add to 1.5 u; they add to at most u), so memory does not
 * bounce, and every move lowers the squared gaps by at least u^2 / 2, so
 * moves end. Rounding each VM to whole units leaves up to half a unit off
 * its share; this moves the units to where the rounding costs least. Null
 * when no move pays.
 */
export function findMove(vms: readonly RebalanceVm[], maxBytes: number): Move | null {
  const total = vms.reduce((n, v) => n + v.heldBytes, 0);
  if (total <= 0 || vms.length < 2) return null;
  const fair = waterFill(total, vms.map((v) => ({ key: v.vm, weight: v.weight, spare: v.heldBytes + Math.max(0, v.spareBytes) })));
  const gap = (v: RebalanceVm) => fair.get(v.vm)! - v.heldBytes;
  let ahead: RebalanceVm | null = null;
  let behind: RebalanceVm | null = null;
  for (const v of vms) {
    if (gap(v) < 0 && v.heldBytes > 0 && (!ahead || gap(v) < gap(ahead))) ahead = v;
    if (gap(v) > 0 && v.giveableBytes >= v.unitBytes && (!behind || gap(v) > gap(behind))) behind = v;
  }
  if (!ahead || !behind) return null;
  const unit = Math.max(ahead.unitBytes, behind.unitBytes);
  const both = gap(behind) - gap(ahead);
  if (both < 1.5 * unit) return null;
  const units = Math.min(Math.max(1, Math.round(both / (2 * unit))), Math.floor(Math.min(ahead.heldBytes, behind.giveableBytes, maxBytes) / unit));
  if (units < 1) return null;
  return { from: ahead.vm, to: behind.vm, bytes: units * unit, fromShareBytes: fair.get(ahead.vm)!, toShareBytes: fair.get(behind.vm)! };
}
