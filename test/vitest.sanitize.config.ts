// The simulated-guest tests once more, with the daemon on the ASan+UBSan
// build of libvhost-user and the shim (`bash native/build.sh --sanitize`):
// test/sim/daemon.ts preloads the runtime into the daemon and fails a test
// whose daemon printed a sanitizer report. No QEMU needed.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = process.env.VUB_SANITIZE_DIR
  ?? execFileSync('bash', ['native/build.sh', '--sanitize'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();

export default defineConfig({
  root,
  test: {
    include: [
      'test/sim/**/*.test.ts',
      'test/device/**/*.test.ts',
      'test/integration/auto-balloon-sim.test.ts',
      'test/integration/guest-pressure-sim.test.ts',
      'test/integration/hysteresis-sim.test.ts',
      'test/integration/control-socket.test.ts',
      'test/integration/metrics.test.ts',
      'test/integration/host-policy-sim.test.ts',
    ],
    env: { VUB_SANITIZE_DIR: dir },
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
