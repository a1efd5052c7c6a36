// What every host pressure source reports.
export interface HostPressureEvent {
  /** 'vmpressure' (cgroup v1) or 'psi' (cgroup v2 / system). */
  source: 'vmpressure' | 'psi';
  /** vmpressure level, or the PSI trigger ("some 100000 2000000"). */
  level: string;
  /** Events folded into this one (an eventfd counter can carry several). */
  count: number;
  /** The memcg or pressure file watched. */
  path: string;
}

export interface PressureSource {
  readonly description: string;
  start(onEvent: (ev: HostPressureEvent) => void, onError: (err: Error) => void): void;
  stop(): void;
}

export const VMPRESSURE_LEVELS = ['low', 'medium', 'critical'] as const;
export type VmpressureLevel = (typeof VMPRESSURE_LEVELS)[number];
export const VMPRESSURE_MODES = ['default', 'hierarchy', 'local'] as const;
export type VmpressureMode = (typeof VMPRESSURE_MODES)[number];
