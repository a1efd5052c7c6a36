// What the daemon needs from the host when it runs as an unprivileged user
// (docs/privileges.md): read/write access to the files of its host-pressure
// source, which root grants by chown as cgroup delegation does, and a run
// directory of its own. Guest RAM arrives as memfds over the vhost-user
// socket, so discarding it needs no right at all.
import { chownSync, existsSync, readFileSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import type { Plan } from '../pressure/detect.js';

export interface UserIdentity {
  name: string;
  uid: number;
  /** Primary group. */
  gid: number;
  /** Primary and supplementary groups. */
  groups: number[];
}

const read = (path: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};

/**
 * A user by name or number from passwd/group text (system users live in the
 * files); null when unknown.
 */
export function lookupUser(spec: string, passwd = read('/etc/passwd'), group = read('/etc/group')): UserIdentity | null {
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || !/^\d+$/.test(f[2] ?? '') || !/^\d+$/.test(f[3] ?? '')) continue;
    if (f[0] !== spec && f[2] !== spec) continue;
    const name = f[0]!;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    const groups = [gid];
    for (const g of group.split('\n')) {
      const gf = g.split(':');
      if (gf.length < 4 || !/^\d+$/.test(gf[2] ?? '')) continue;
      const members = (gf[3] ?? '').split(',').map((m) => m.trim());
      if (members.includes(name) && !groups.includes(Number(gf[2]))) groups.push(Number(gf[2]));
    }
    return { name, uid, gid, groups };
  }
  return null;
}

/** The name to put in a chown command for this process's user (the uid when it has no name). */
export function selfName(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? 0);
  }
}

/** "vhost-user-balloon (uid 999)" for messages. */
export function selfDescription(): string {
  return `${selfName()} (uid ${process.getuid?.() ?? 0})`;
}

export type Access = 'read' | 'write';

/** One right the daemon's user needs on a file. */
export interface Grant {
  path: string;
  access: Access;
  why: string;
  /** False for /proc/pressure/*: its rule is the kernel's, not the file mode's. */
  chownable: boolean;
}

/** The rights a host-pressure plan needs (none for --pressure none). */
export function pressureGrants(plan: Plan): Grant[] {
  switch (plan.kind) {
    case 'vmpressure':
      return [
        {
          path: join(plan.memcg, 'cgroup.event_control'), access: 'write', chownable: true,
          why: 'the vmpressure eventfd is registered by writing "<eventfd> <fd> <level>" here',
        },
        {
          path: join(plan.memcg, 'memory.pressure_level'), access: 'read', chownable: true,
          why: 'the kernel checks read permission on it when the registration is written (usually mode 0444)',
        },
      ];
    case 'psi':
      return [{
        path: plan.file, access: 'write', chownable: !plan.file.startsWith('/proc/'),
        why: 'the PSI trigger is written to this file and its fd kept open',
      }];
    case 'none':
      return [];
  }
}

/** Whether `user` has `access` by the file's owner, group and mode (root always has). */
export function hasAccess(st: { uid: number; gid: number; mode: number }, user: Pick<UserIdentity, 'uid' | 'groups'>, access: Access): boolean {
  if (user.uid === 0) return true;
  const bit = access === 'read' ? 4 : 2;
  if (st.uid === user.uid) return ((st.mode >> 6) & bit) !== 0;
  if (user.groups.includes(st.gid)) return ((st.mode >> 3) & bit) !== 0;
  return (st.mode & bit) !== 0;
}

/** The shell command that grants `path` to `user` (by name). */
export const chownCommand = (user: string, path: string): string => `chown ${user} ${path}`;

export interface GrantResult {
  path: string;
  access: Access;
  /** already: nothing to do; chowned: the file now belongs to the user; missing: no such file; impossible: chown cannot help. */
  action: 'already' | 'chowned' | 'missing' | 'impossible';
  note?: string;
}

/**
 * Give `user` the rights in `grants` (as root): a file the user cannot
 * read/write is chowned to it, its group kept. A cgroup file's owner is
 * what cgroup delegation changes too; the kernel checks nothing else.
 */
export function applyGrants(grants: Grant[], user: UserIdentity, chown: (path: string, uid: number, gid: number) => void = chownSync): GrantResult[] {
  return grants.map((g) => {
    let st;
    try {
      st = statSync(g.path);
    } catch {
      return { path: g.path, access: g.access, action: 'missing', note: `${g.path} does not exist (yet): the daemon will say so when it starts` };
    }
    if (hasAccess(st, user, g.access)) return { path: g.path, access: g.access, action: 'already' };
    if (!g.chownable) {
      return {
        path: g.path, access: g.access, action: 'impossible',
        note: `${g.path} is mode ${(st.mode & 0o777).toString(8)}: before Linux 6.4 only CAP_SYS_RESOURCE may create PSI triggers there (systemd: AmbientCapabilities=CAP_SYS_RESOURCE), or watch a cgroup v2 group's memory.pressure with --memcg`,
      };
    }
    chown(g.path, user.uid, st.gid);
    return { path: g.path, access: g.access, action: 'chowned' };
  });
}

/** What to do when a socket cannot be created in `dir`: name the directory and the user. */
export function socketDirHint(dir: string): string {
  if (!existsSync(dir)) return `${dir} does not exist: create it for the daemon's user (install -d -o ${selfName()} -m 0755 ${dir})`;
  return `the daemon runs as ${selfDescription()}: make ${dir} writable by it, as root: chown ${selfName()} ${dir} `
    + '(the systemd unit\'s RuntimeDirectory= and --grant do this for /run/vhost-user-balloon); see docs/privileges.md';
}
