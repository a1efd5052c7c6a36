// Which uid:gid libvirt runs QEMU as, when the domain XML does not say
// (libvirt adds the DAC seclabel only after the prepare hook): `user` and
// `group` in qemu.conf, else Debian's build default, libvirt-qemu.
import { readFileSync } from 'node:fs';

export const DEFAULT_QEMU_USER = 'libvirt-qemu';

/** `user = "..."` and `group = "..."` from qemu.conf text (comments ignored). */
export function qemuConfIdentity(text: string): { user: string; group: string } {
  const value = (key: string): string | undefined => {
    for (const line of text.split('\n')) {
      const m = new RegExp(`^\\s*${key}\\s*=\\s*"([^"]*)"`).exec(line);
      if (m) return m[1];
    }
    return undefined;
  };
  return { user: value('user') ?? DEFAULT_QEMU_USER, group: value('group') ?? DEFAULT_QEMU_USER };
}

/** "+N" is a number, anything else a name in the passwd/group text. */
export function resolveId(spec: string, table: string): number | null {
  if (/^\+\d+$/.test(spec)) return Number(spec.slice(1));
  for (const line of table.split('\n')) {
    const f = line.split(':');
    if (f[0] === spec && f[2] !== undefined && /^\d+$/.test(f[2])) return Number(f[2]);
  }
  return /^\d+$/.test(spec) ? Number(spec) : null;
}

const readOr = (path: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};

/** The QEMU identity on this host, or null when it cannot be resolved. */
export function qemuIdentity(confPath = '/etc/libvirt/qemu.conf'): { uid: number; gid: number } | null {
  const { user, group } = qemuConfIdentity(readOr(confPath));
  const uid = resolveId(user, readOr('/etc/passwd'));
  const gid = resolveId(group, readOr('/etc/group'));
  return uid === null || gid === null ? null : { uid, gid };
}
