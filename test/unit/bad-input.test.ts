import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { Writable } from 'node:stream';
import { BadInputCounter } from '../../src/device/bad-input.js';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({ write(chunk, _enc, cb) { lines.push(JSON.parse(String(chunk))); cb(); } });
  return { log: pino({ level: 'warn' }, stream), lines };
}

describe('BadInputCounter', () => {
  it('counts every occurrence but logs once per kind per window', async () => {
    const { log, lines } = capture();
    let t = 0;
    const c = new BadInputCounter(log, 1000, () => t);
    for (let i = 0; i < 100; i++) c.record('pfn_outside_ram');
    c.record('unknown_message', {}, 5);
    await new Promise((r) => setImmediate(r));
    expect(c.get('pfn_outside_ram')).toBe(100);
    expect(c.get('unknown_message')).toBe(5);
    expect(lines.map((l) => l.kind)).toEqual(['pfn_outside_ram', 'unknown_message']);
    t = 1500;
    c.record('pfn_outside_ram');
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({ kind: 'pfn_outside_ram', suppressedSinceLastLog: 99, total: 101 });
  });
});
