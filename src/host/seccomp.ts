// The daemon's seccomp denylist (native/vub-seccomp.c): installed on every
// thread once the daemon has started; --no-seccomp leaves it off.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import koffi from 'koffi';
import { strerror } from '../transport/libc.js';
import { nativeDir } from '../transport/native.js';

let lib: {
  install: () => number;
  deniedCount: () => number;
  probe: (out: Int32Array) => number;
} | undefined;

function bind(): NonNullable<typeof lib> {
  if (!lib) {
    // The shim's library, loaded once more by path: dlopen hands back the same one.
    const h = koffi.load(join(nativeDir(), 'libvub-shim.so'));
    lib = {
      install: h.func('int vub_seccomp_install(void)') as () => number,
      deniedCount: h.func('int vub_seccomp_denied_count(void)') as () => number,
      probe: h.func('int vub_seccomp_probe(_Out_ int *out)') as (out: Int32Array) => number,
    };
  }
  return lib;
}

export interface SeccompResult {
  installed: boolean;
  /** Denied system calls (besides clone3 -> ENOSYS, namespace flags of clone and foreign ABIs). */
  denied: number;
  /** Threads of this process when it was installed: all of them got it (TSYNC). */
  threads: number;
  error?: string;
}

const threadCount = (): number => readdirSync('/proc/self/task').length;

/** NO_NEW_PRIVS, then the filter on every thread. Never throws: the result says what happened. */
export function installSeccomp(): SeccompResult {
  let l;
  try {
    l = bind();
  } catch (err) {
    return { installed: false, denied: 0, threads: threadCount(), error: `the native library has no seccomp filter: ${(err as Error).message}` };
  }
  const threads = threadCount();
  const r = Number(l.install());
  if (r === 0) return { installed: true, denied: Number(l.deniedCount()), threads };
  const error = r < 0 ? `seccomp: ${strerror(-r)}` : `seccomp TSYNC: thread ${r} could not take the filter`;
  return { installed: false, denied: 0, threads, error };
}

/** Seccomp mode of each thread of `pid` from /proc (0 none, 2 filter): for logs and tests. */
export function threadSeccompModes(pid: number | 'self' = 'self'): number[] {
  const dir = `/proc/${pid}/task`;
  return readdirSync(dir).map((tid) => {
    const m = /^Seccomp:\s+(\d+)/m.exec(readFileSync(join(dir, tid, 'status'), 'utf8'));
    return m ? Number(m[1]) : -1;
  });
}

/**
 * Test aid (VUB_TEST_SECCOMP_PROBE=1 only): what a new thread gets from calls
 * the filter denies, as errno names. Unfiltered, each fails harmlessly
 * (execve of a missing file: ENOENT; unshare(0): OK; setns(-1): EBADF;
 * clone3(NULL, 0): EINVAL).
 */
export function seccompProbe(): Record<string, string> {
  const out = new Int32Array(4);
  const r = Number(bind().probe(out));
  if (r < 0) throw new Error(`seccomp probe: pthread_create: ${strerror(-r)}`);
  const name = (e: number) => (e === 0 ? 'OK' : errnoName(e));
  return { execve: name(out[0]!), unshare: name(out[1]!), setns: name(out[2]!), clone3: name(out[3]!) };
}

const ERRNO_NAMES: Record<number, string> = { 1: 'EPERM', 2: 'ENOENT', 9: 'EBADF', 13: 'EACCES', 14: 'EFAULT', 22: 'EINVAL', 38: 'ENOSYS' };
export const errnoName = (e: number): string => ERRNO_NAMES[e] ?? `errno ${e}`;
