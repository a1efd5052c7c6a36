import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import SkipReporter from './skip-reporter.js';

export default defineConfig({
  root: fileURLToPath(new URL('..', import.meta.url)),
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['**/node_modules/**'],
    // Integration and end-to-end tests share real resources (memcgs, QEMU,
    // guest RAM): run files one at a time on these 2-core machines.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Skips grouped by reason at the end; a reason README.md does not list fails the run.
    reporters: ['default', new SkipReporter()],
  },
});
