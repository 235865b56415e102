import { defineConfig } from 'vitest/config';

// Two cores: two test files at a time. Each file gets its own nats-server and
// database (see services/testing/servers.ts), so files never see each other's streams.
export default defineConfig({
  test: {
    include: ['.ci/**/*.test.ts', 'contracts/**/*.test.ts', 'services/**/*.test.ts', 'bench/**/*.test.ts', 'k8s/**/*.test.ts', 'ops/**/*.test.ts', 'docs/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 60_000,
    reporters: process.env.CI ? ['default', ['json', { outputFile: '.test-results/results.json' }]] : ['default'],
  },
});
