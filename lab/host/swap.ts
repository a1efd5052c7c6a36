// A temporary swap file: without swap, reclaim cannot move anonymous or
// shmem pages (guest RAM is shmem), so a squeezed memcg goes straight to OOM.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';

export interface TempSwap {
  /** null when the machine already had swap and nothing was created. */
  path: string | null;
  remove(): void;
}

export function activeSwaps(): string[] {
  return readFileSync('/proc/swaps', 'utf8').split('\n').slice(1).filter(Boolean).map((l) => l.split(/\s+/)[0] ?? '');
}

export function removeSwapFile(path: string): void {
  if (activeSwaps().includes(path)) execFileSync('swapoff', [path]);
  rmSync(path, { force: true });
}

/**
 * Turn on a swap file at `path` unless some swap is already on; `always`:
 * even then (on a shared machine another job's swap may go away mid-run).
 */
export function ensureSwap(path: string, sizeMiB: number, o: { always?: boolean } = {}): TempSwap {
  if (!o.always && activeSwaps().length > 0) return { path: null, remove: () => {} };
  try {
    execFileSync('fallocate', ['-l', `${sizeMiB}M`, path]);
    execFileSync('chmod', ['600', path]);
    execFileSync('mkswap', [path], { stdio: 'ignore' });
    execFileSync('swapon', [path]);
  } catch (err) {
    removeSwapFile(path);
    throw new Error(`cannot turn on a temporary swap file at ${path}: ${(err as Error).message}`);
  }
  return { path, remove: () => removeSwapFile(path) };
}
