// What every host pressure source reports.
export interface HostPressureEvent {
  /** 'vmpressure' (cgroup v1) or 'psi' (cgroup v2 / system). */
  source: 'vmpressure' | 'psi';
  /** vmpressure level ("low"), or the PSI trigger ("some 100000 2000000"). */
  level: string;
  /**
   * Kernel events folded into this one: the eventfd counter read at once
   * (vmpressure can signal hundreds of times a second); 1 for PSI, which
   * fires at most once per window by itself.
   */
  count: number;
  /** The memcg or pressure file watched. */
  path: string;
  /**
   * process.hrtime.bigint() at the first line of JavaScript that handled the
   * eventfd wake-up, for the pressure-to-CONFIG_CHANGE latency; absent on
   * events that did not come from a kernel wake-up (tests).
   */
  wokeAt?: bigint;
}

export interface PressureSource {
  readonly kind: 'vmpressure' | 'psi';
  /** "vmpressure low,hierarchy on /sys/fs/cgroup/memory/machine.slice" */
  readonly description: string;
  /** The memcg directory or pressure file watched. */
  readonly path: string;
  /**
   * Open, register and watch. Throws PressureError (EBALLOON_PRESSURE_*) when
   * that fails; later failures (memcg removed, eventfd error) go to onError
   * once, after which the source is stopped and may be started again.
   */
  start(onEvent: (ev: HostPressureEvent) => void, onError: (err: Error) => void): void;
  /** Unwatch and close; safe to call twice. */
  stop(): void;
  readonly running: boolean;
}

export const VMPRESSURE_LEVELS = ['low', 'medium', 'critical'] as const;
export type VmpressureLevel = (typeof VMPRESSURE_LEVELS)[number];
export const VMPRESSURE_MODES = ['default', 'hierarchy', 'local'] as const;
export type VmpressureMode = (typeof VMPRESSURE_MODES)[number];
