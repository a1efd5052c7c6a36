// The daemon's unprivileged user for tests: created (idempotently, by the
// product's own examples/install-user.sh) when missing, and what /proc says
// a process runs as.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { lookupUser, type UserIdentity } from '../../src/host/privileges.js';
import { DAEMON_USER } from '../../src/paths.js';

const ROOT = join(import.meta.dirname, '..', '..');

/** The vhost-user-balloon system user, created if missing (root only). */
export function ensureDaemonUser(): UserIdentity {
  execFileSync('sh', [join(ROOT, 'examples', 'install-user.sh'), DAEMON_USER], { encoding: 'utf8' });
  const u = lookupUser(DAEMON_USER);
  if (!u) throw new Error(`${DAEMON_USER} still missing after examples/install-user.sh`);
  return u;
}

export interface ProcIdentity {
  uids: number[];
  gids: number[];
  groups: number[];
  capEff: bigint;
  noNewPrivs: number;
  seccomp: number;
}

/** Uid/Gid (real, effective, saved, fs), supplementary groups, effective capabilities, NoNewPrivs, Seccomp of a process. */
export function procIdentity(pid: number): ProcIdentity {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string) => (new RegExp(`^${k}:[ \\t]*(.*)$`, 'm').exec(text)?.[1] ?? '').trim();
  const nums = (k: string) => field(k).split(/\s+/).filter(Boolean).map(Number);
  return {
    uids: nums('Uid'), gids: nums('Gid'), groups: nums('Groups'),
    capEff: BigInt(`0x${field('CapEff') || '0'}`), noNewPrivs: Number(field('NoNewPrivs')), seccomp: Number(field('Seccomp')),
  };
}
