import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { accelArgs, type AccelProbe, chooseAccel, probeAccel } from '../../lab/vm/accel.js';

describe('chooseAccel', () => {
  const cases: Array<[string, AccelProbe, 'kvm' | 'tcg']> = [
    ['real KVM', { kvmOpenable: true, kvmPvm: false }, 'kvm'],
    ['nested paravirtual KVM (this CI)', { kvmOpenable: true, kvmPvm: true }, 'tcg'],
    ['no /dev/kvm', { kvmOpenable: false, kvmPvm: false }, 'tcg'],
    ['kvm_pvm without /dev/kvm', { kvmOpenable: false, kvmPvm: true }, 'tcg'],
    ['override tcg on real KVM', { kvmOpenable: true, kvmPvm: false, override: 'tcg' }, 'tcg'],
    ['override TCG is case-insensitive', { kvmOpenable: true, kvmPvm: false, override: ' TCG ' }, 'tcg'],
    ['override kvm cannot make kvm_pvm usable', { kvmOpenable: true, kvmPvm: true, override: 'kvm' }, 'tcg'],
    ['override kvm without /dev/kvm', { kvmOpenable: false, kvmPvm: false, override: 'kvm' }, 'tcg'],
    ['override kvm on real KVM', { kvmOpenable: true, kvmPvm: false, override: 'kvm' }, 'kvm'],
    ['unknown override is ignored', { kvmOpenable: true, kvmPvm: false, override: 'hvf' }, 'kvm'],
  ];
  it.each(cases)('%s', (_name, probe, want) => {
    const c = chooseAccel(probe);
    expect(c.accel).toBe(want);
    expect(c.cpu).toBe(want === 'kvm' ? 'host' : 'qemu64');
    expect(c.reason).not.toBe('');
  });

  it('names kvm_pvm in the reason so the log explains the slow path', () => {
    expect(chooseAccel({ kvmOpenable: true, kvmPvm: true }).reason).toMatch(/kvm_pvm/);
  });

  it('maps the choice to QEMU arguments', () => {
    expect(accelArgs(chooseAccel({ kvmOpenable: true, kvmPvm: false }))).toEqual(['-accel', 'kvm', '-cpu', 'host']);
    expect(accelArgs(chooseAccel({ kvmOpenable: false, kvmPvm: false }))).toEqual(['-accel', 'tcg', '-cpu', 'qemu64']);
  });
});

describe('probeAccel', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vub-accel-'));
    mkdirSync(join(dir, 'module'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const paths = () => ({ kvmDev: join(dir, 'kvm'), sysModule: join(dir, 'module'), procModules: join(dir, 'modules') });

  it('finds nothing on a machine without KVM', () => {
    expect(probeAccel({}, paths())).toEqual({ kvmOpenable: false, kvmPvm: false, override: undefined });
  });

  it('sees an openable /dev/kvm and a built-in kvm_pvm (/sys/module only)', () => {
    writeFileSync(join(dir, 'kvm'), '');
    mkdirSync(join(dir, 'module', 'kvm_pvm'));
    const p = probeAccel({ VUB_ACCEL: 'tcg' }, paths());
    expect(p).toEqual({ kvmOpenable: true, kvmPvm: true, override: 'tcg' });
    expect(chooseAccel({ ...p, override: undefined }).accel).toBe('tcg');
  });

  it('sees a loadable kvm_pvm in /proc/modules, not a module that merely starts with the name', () => {
    writeFileSync(join(dir, 'modules'), 'kvm_pvmx 1 0 - Live 0x0\nkvm 1 1 kvm_pvm, Live 0x0\n');
    expect(probeAccel({}, paths()).kvmPvm).toBe(false);
    writeFileSync(join(dir, 'modules'), 'kvm 1 1 kvm_pvm, Live 0x0\nkvm_pvm 45056 0 - Live 0x0\n');
    expect(probeAccel({}, paths()).kvmPvm).toBe(true);
  });

  it('treats an unreadable /dev/kvm as absent', () => {
    mkdirSync(join(dir, 'kvm')); // a directory cannot be opened O_RDWR
    expect(probeAccel({}, paths()).kvmOpenable).toBe(false);
  });
});
