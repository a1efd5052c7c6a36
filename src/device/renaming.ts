// After an incoming migration the destination's memfd holds every page of
// guest RAM, ballooned ones too: QEMU reads each zero page it receives
// before it would write it (ram_handle_compressed), and reading a hole of a
// shared memfd allocates it. Normally the source's page set comes with the
// device state (device-state.ts) and those pages are freed at once. Without
// it (the source's daemon died during the migration, or its QEMU or daemon
// cannot transfer device state) the daemon knows that balloon by count only
// (`actual`), so it cannot free those pages itself. It has the guest name
// them again: num_pages below the balloon by its unnamed pages, so the guest
// deflates them (Linux deflates the pages it inflated last first, and right
// after arrival those are all unnamed), then the target again, so it
// inflates as many, which are named and discarded. The dip starts at once,
// also with an inflation under way: pages named since arrival lie above the
// unnamed ones and would have to be deflated first. The guest has that
// memory back for about one deflate and one inflate; the host allocates
// nothing it had not already.

/** At most this many dips: a dip that deflates named pages (inflated since arrival) leaves unnamed ones for the next. */
const MAX_DIPS = 4;

export class Renaming {
  private active = false;
  private dips = 0;
  /** The balloon size the current dip asks for (null: none under way). */
  private dipTo: number | null = null;

  get running(): boolean {
    return this.active;
  }

  start(): void {
    this.active = true;
    this.dips = 0;
    this.dipTo = null;
  }

  stop(): void {
    this.active = false;
    this.dipTo = null;
  }

  /**
   * The num_pages to present for `target`, given the balloon as counted
   * (`balloon`, `unnamed` of it known by count only). Called again whenever
   * one of them changes.
   */
  present(target: number, balloon: number, unnamed: number): number {
    if (!this.active) return target;
    if (this.dipTo !== null) {
      if (balloon > this.dipTo) return Math.min(this.dipTo, target);
      this.dipTo = null; // reached: back to the target, the guest inflates again
      return target;
    }
    if (unnamed === 0 || this.dips >= MAX_DIPS) {
      this.stop();
      return target;
    }
    this.dips++;
    this.dipTo = balloon - unnamed;
    return this.dipTo;
  }
}
