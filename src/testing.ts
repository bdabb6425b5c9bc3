export type {
  FakeKeyConfig,
  FakeAccountConfig,
  FakeFault,
  FakeModelConfig,
  FakeServerOptions,
  FakeRequestRecord,
  FakeQuota,
  FakeRecordedResponse,
  FakeRequestFilter,
  FakeAbortEvent,
  FakeKeyPatch,
  FakeAccountPatch,
  FakeOpenRouter,
} from './testing/types.js';
export { startFakeOpenRouter } from './testing/fake-server.js';
export { loadFixture, listFixtures, parseFixture } from './testing/fixtures.js';
export type { OpenRouterFixture } from './testing/fixtures.js';
