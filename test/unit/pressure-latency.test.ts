import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { percentile, PRESSURE_TO_CONFIG_CHANGE_METRIC, PressureLatency, STATUS_WINDOW } from '../../src/control/latency.js';
import { pressureToConfigChangeSummary } from '../../src/control/metrics.js';

describe('percentile (nearest rank)', () => {
  const xs = Array.from({ length: 200 }, (_, i) => i + 1);
  it.each([[0.5, 100], [0.99, 198], [1, 200], [0.001, 1]])('q=%d of 1..200', (q, want) => expect(percentile(xs, q)).toBe(want));
  it('one value is every percentile', () => expect(percentile([7], 0.99)).toBe(7));
  it('nothing is NaN', () => expect(percentile([], 0.5)).toBeNaN());
});

describe('PressureLatency', () => {
  it('starts empty', () => {
    expect(new PressureLatency().snapshot()).toEqual({ count: 0, p50Seconds: null, p99Seconds: null });
  });

  it('observes hrtime differences in seconds, into the daemon\'s labelled Summary and the status snapshot', async () => {
    const summary = pressureToConfigChangeSummary();
    const l = new PressureLatency((s) => summary.observe({ vm: 'vm1' }, s));
    const t = 10_000_000_000n;
    for (const us of [300, 100, 200]) l.observeSince(t, t + BigInt(us * 1000));
    expect(l.snapshot()).toEqual({ count: 3, p50Seconds: 0.0002, p99Seconds: 0.0003 });
    const registry = new Registry();
    registry.registerMetric(summary);
    const text = await registry.metrics();
    expect(text).toContain(`# TYPE ${PRESSURE_TO_CONFIG_CHANGE_METRIC} summary`);
    expect(text).toContain(`${PRESSURE_TO_CONFIG_CHANGE_METRIC}_count{vm="vm1"} 3`);
    expect(text).toMatch(new RegExp(`${PRESSURE_TO_CONFIG_CHANGE_METRIC}\\{quantile="0.99",vm="vm1"\\} 0.000`));
  });

  it('status keeps the last STATUS_WINDOW events; the count keeps growing', () => {
    const l = new PressureLatency();
    // A slow start, then STATUS_WINDOW fast events push it out of the window.
    l.observeSince(0n, 1_000_000_000n);
    for (let i = 0; i < STATUS_WINDOW; i++) l.observeSince(0n, 1000n);
    expect(l.snapshot()).toEqual({ count: STATUS_WINDOW + 1, p50Seconds: 1e-6, p99Seconds: 1e-6 });
  });

  it('two instances do not collide in the global registry', () => {
    expect(() => { new PressureLatency(); new PressureLatency(); }).not.toThrow();
  });
});
