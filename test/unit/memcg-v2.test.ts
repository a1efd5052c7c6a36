// Memcg on cgroup2 (v2-only hosts): which files it writes and reads, checked
// on a directory laid out like a cgroup2 root (this machine's cgroup2 has no
// memory controller, so the real files cannot be made here; see
// test/integration/cgroup-v2-only.test.ts).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Memcg } from '../../lab/host/memcg.js';

describe('Memcg on cgroup2', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const fakeRoot = (controllers: string, subtree: string) => {
    const root = mkdtempSync(join(tmpdir(), 'vub-fake-cgroup2-'));
    dirs.push(root);
    writeFileSync(join(root, 'cgroup.controllers'), `${controllers}\n`);
    writeFileSync(join(root, 'cgroup.subtree_control'), subtree ? `${subtree}\n` : '');
    return root;
  };

  it('enables memory in the root\'s subtree_control, sets memory.max, reads memory.current; watched with PSI', () => {
    const root = fakeRoot('cpuset cpu io memory pids', 'cpu');
    const m = Memcg.createV2('vm1', 64 << 20, root);
    expect(m.version).toBe(2);
    expect(m.path).toBe(join(root, 'vm1'));
    expect(readFileSync(join(root, 'cgroup.subtree_control'), 'utf8')).toBe('+memory');
    expect(readFileSync(join(m.path, 'memory.max'), 'utf8')).toBe(String(64 << 20));
    writeFileSync(join(m.path, 'memory.current'), '12345\n');
    expect(m.usageBytes()).toBe(12345);
    expect(m.limitBytes()).toBe(64 << 20);
    writeFileSync(join(m.path, 'memory.max'), 'max\n');
    expect(m.limitBytes()).toBe(Infinity);
    expect(m.pressureArgs()).toEqual(['--pressure', 'psi', '--memcg', m.path]);
  });

  it('leaves subtree_control alone when memory is enabled already', () => {
    const root = fakeRoot('memory pids', 'memory pids');
    Memcg.createV2('vm2', 1 << 20, root);
    expect(readFileSync(join(root, 'cgroup.subtree_control'), 'utf8')).toBe('memory pids\n');
  });

  it('a cgroup2 root without the memory controller (bound to v1, as here) is refused, naming why', () => {
    const root = fakeRoot('hugetlb', '');
    expect(() => Memcg.createV2('vm3', 1 << 20, root)).toThrow(/offers no memory controller \(cgroup.controllers\): it is bound to a cgroup v1 hierarchy/);
  });
});
