import { defineConfig } from 'vitest/config';

// Three projects; `npm test` runs all of them, `npx vitest run --project unit`
// only the fast ones. Root and e2e tests skip locally when a prerequisite is
// missing and fail under CI (test/prerequisites.ts).
const ROOT = [
  'test/daemons/net-monitor/packets.test.ts',
  'test/daemons/net-monitor/reconnect.test.ts',
  'test/core/storage/xfs.test.ts',
  'test/core/health/doctor.test.ts',
  'test/process/run-netns.test.ts',
];
const E2E = [
  'test/e2e/**/*.test.ts',
  'test/sim/*.test.ts',
  'test/contract/**/*.test.ts',
  'test/daemons/clone-monitor/**/*.test.ts',
  'test/web/api.test.ts',
  'test/web/dashboard.test.ts',
];

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: [...ROOT, ...E2E] },
      },
      { extends: true, test: { name: 'root', include: ROOT } },
      { extends: true, test: { name: 'e2e', include: E2E } },
    ],
  },
});
