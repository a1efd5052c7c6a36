// Host pressure shared by the VMs of one daemon: VMs that watch the same
// memcg (or PSI file and trigger) share one registration, one eventfd and one
// supervisor; each event reaches every subscriber. The last unsubscribe
// stops the source.
import type { Logger } from '../log.js';
import { createSource, type Plan } from '../pressure/detect.js';
import { PressureSupervisor } from '../pressure/supervisor.js';
import { psiTriggerText } from '../pressure/psi.js';
import type { HostPressureEvent } from '../pressure/types.js';
import type { FdWatcher } from '../transport/event-loop.js';

export type PressureListener = (ev: HostPressureEvent) => void;

export interface PressureSubscription {
  readonly key: string;
  readonly description: string;
  unsubscribe(): void;
}

interface Shared {
  supervisor: PressureSupervisor;
  description: string;
  listeners: Set<PressureListener>;
}

/** Plans that watch the same thing in the same way share a key. */
export function planKey(plan: Plan): string | null {
  switch (plan.kind) {
    case 'vmpressure':
      return `vmpressure ${plan.memcg} ${plan.level}${plan.mode ? `,${plan.mode}` : ''}`;
    case 'psi':
      return `psi ${plan.file} ${psiTriggerText(plan.trigger)}`;
    case 'none':
      return null;
  }
}

export class PressureHub {
  private readonly shared = new Map<string, Shared>();

  constructor(private readonly loop: FdWatcher, private readonly log: Logger) {}

  /** Subscriptions in use, by key, with how many VMs each serves. */
  get sources(): Array<{ key: string; description: string; subscribers: number; state: string }> {
    return [...this.shared.entries()].map(([key, s]) => ({ key, description: s.description, subscribers: s.listeners.size, state: s.supervisor.state }));
  }

  /**
   * Join (or start) the source for `plan`; null for 'none'. Throws the
   * source's startup error (bad path, missing right) when it is new.
   */
  subscribe(plan: Plan, listener: PressureListener): PressureSubscription | null {
    const key = planKey(plan);
    if (key === null) return null;
    let s = this.shared.get(key);
    if (!s) {
      const source = createSource(plan, this.loop)!;
      const listeners = new Set<PressureListener>();
      const fanOut = (ev: HostPressureEvent) => {
        for (const l of [...listeners]) {
          try {
            l(ev);
          } catch (err) {
            this.log.error({ err, source: key }, 'a host pressure subscriber failed');
          }
        }
      };
      const supervisor = new PressureSupervisor(source, plan.kind === 'vmpressure' ? plan.memcg : null, fanOut, this.log);
      supervisor.start(); // throws with the reason; nothing is registered then
      s = { supervisor, description: source.description, listeners };
      this.shared.set(key, s);
    }
    s.listeners.add(listener);
    const shared = s;
    let done = false;
    return {
      key, description: s.description,
      unsubscribe: () => {
        if (done) return;
        done = true;
        shared.listeners.delete(listener);
        if (shared.listeners.size === 0) {
          shared.supervisor.stop();
          this.shared.delete(key);
        }
      },
    };
  }

  stop(): void {
    for (const s of this.shared.values()) s.supervisor.stop();
    this.shared.clear();
  }
}
