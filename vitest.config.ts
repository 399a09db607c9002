import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One process per test file: the C core installs a SIGSEGV handler and
    // keeps process-wide state (8 runtimes at most, an arena), which worker
    // threads would share.
    pool: 'forks',
    // The QEMU guest (TCG) runs 10-45x slower than the host.
    testTimeout: 600_000,
    hookTimeout: 600_000,
    globalSetup: ['test/helpers/global-setup.ts'],
  },
});
