// The two artefacts a VM needs, each produced (and cached) by a build script
// of this repository: the patched QEMU binary and the guest kernel + initrd.
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VmError } from './errors.js';

/** Repository root: the nearest ancestor holding qemu/guest/build.sh (works from src/ and dist/src/). */
export function repoRoot(from = dirname(fileURLToPath(import.meta.url))): string {
  for (let d = from; ; d = dirname(d)) {
    if (existsSync(join(d, 'qemu', 'guest', 'build.sh'))) return d;
    if (dirname(d) === d) throw new VmError('EBALLOON_VM_BUILD', `no qemu/guest/build.sh above ${from}`);
  }
}

export interface ScriptOptions {
  env?: NodeJS.ProcessEnv;
  /** Progress lines from the script's stderr; default: passed through to our stderr. */
  onProgress?: (line: string) => void;
}

/** Runs `bash <script>` from the repository root; resolves with its stdout, trimmed. */
export function runBuildScript(script: string, o: ScriptOptions = {}): Promise<string> {
  const root = repoRoot();
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [join(root, script)], {
      cwd: root,
      env: { ...process.env, ...o.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let errTail: string[] = [];
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      const lines = (partial + d).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        errTail = [...errTail.slice(-29), l];
        if (o.onProgress) o.onProgress(l);
        else process.stderr.write(`${l}\n`);
      }
    });
    child.on('error', (e) => reject(new VmError('EBALLOON_VM_BUILD', `cannot run bash ${script}: ${e.message}`)));
    child.on('close', (code, signal) => {
      if (partial) errTail.push(partial);
      if (code === 0) resolve(out.trim());
      else reject(new VmError('EBALLOON_VM_BUILD', `bash ${script} failed (${signal ?? `exit ${code}`})`, errTail.join('\n')));
    });
  });
}

/** Path of the patched qemu-system-x86_64 that qemu/build.sh builds or finds in its cache. */
export async function qemuBinary(o: ScriptOptions = {}): Promise<string> {
  const out = await runBuildScript('qemu/build.sh', o);
  const path = out.split('\n').pop() ?? '';
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new VmError('EBALLOON_VM_BUILD', `qemu/build.sh printed '${out}', not an executable file`);
  }
  return path;
}

export interface GuestImage {
  dir: string;
  /** What -kernel gets: the ELF vmlinux (PVH entry, no in-guest decompression) when present, else vmlinuz. */
  kernel: string;
  /** The packaged bzImage, for boot paths that need it. */
  vmlinuz: string;
  initrd: string;
}

/** Guest kernel + initramfs from qemu/guest/build.sh; balloonKo swaps in another virtio_balloon.ko. */
export async function guestImage(o: ScriptOptions & { balloonKo?: string } = {}): Promise<GuestImage> {
  const env = { ...o.env, ...(o.balloonKo ? { GUEST_BALLOON_KO: o.balloonKo } : {}) };
  const dir = (await runBuildScript('qemu/guest/build.sh', { ...o, env })).split('\n').pop() ?? '';
  const vmlinux = join(dir, 'vmlinux');
  const img: GuestImage = {
    dir,
    kernel: existsSync(vmlinux) ? vmlinux : join(dir, 'vmlinuz'),
    vmlinuz: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.gz'),
  };
  if (!existsSync(img.vmlinuz) || !existsSync(img.initrd)) {
    throw new VmError('EBALLOON_VM_BUILD', `qemu/guest/build.sh printed '${dir}', which lacks vmlinuz or initrd.gz`);
  }
  return img;
}
