// Test support, in one place: what test files (and the benchmarks) import. Production
// code never loads it.
// `import { startTestCluster, eventually, type TestCluster } from '../testing/index.ts'`
//  - servers.ts: a private nats-server and a fresh Postgres database per test file, a
//    stoppable Postgres, free ports, eventually();
//  - cluster.ts: the real runtime with the real registry in this process, or spawned;
//  - commerce.ts: the commerce saga with the gateway and SMS simulators the test drives;
//  - books.ts: the commerce saga's invariant, checked from the outside (also bench/saga.ts);
//  - http.ts: an app with the kit's middleware on a loopback port (the kit's own tests).
export * from './servers.ts';
export * from './cluster.ts';
export * from './commerce.ts';
export * from './books.ts';
export * from './http.ts';
