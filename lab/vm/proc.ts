// Host-side memory of the QEMU process. Guest RAM is a shared memfd, so what
// the host really spends on the guest shows up as RssShmem, not RssAnon.
import { readdir, readFile, readlink, stat } from 'node:fs/promises';

export interface ProcMemory {
  vmRssKiB: number;
  rssAnonKiB: number;
  rssFileKiB: number;
  rssShmemKiB: number;
}

/** Parses the "Key:   N kB" lines of /proc/<pid>/status. */
export function parseProcStatus(text: string): ProcMemory {
  const kib = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text);
    if (!m?.[1]) throw new Error(`/proc/<pid>/status has no ${key} line`);
    return Number(m[1]);
  };
  return { vmRssKiB: kib('VmRSS'), rssAnonKiB: kib('RssAnon'), rssFileKiB: kib('RssFile'), rssShmemKiB: kib('RssShmem') };
}

export async function procMemory(pid: number): Promise<ProcMemory> {
  return parseProcStatus(await readFile(`/proc/${pid}/status`, 'utf8'));
}

/**
 * Bytes allocated to a QEMU's guest RAM memfd: st_blocks of /proc/PID/fd/N
 * whose link is "/memfd:memory-backend-memfd (deleted)" (QEMU names the
 * memfd after the backend type; one memory-backend-memfd per VM here).
 */
export async function memfdAllocatedBytes(pid: number): Promise<number> {
  const dir = `/proc/${pid}/fd`;
  for (const fd of await readdir(dir)) {
    const link = await readlink(`${dir}/${fd}`).catch(() => '');
    if (link === '/memfd:memory-backend-memfd (deleted)') return (await stat(`${dir}/${fd}`)).blocks * 512;
  }
  throw new Error(`process ${pid} has no memory-backend-memfd`);
}
