export type {
  FakeKeyConfig,
  FakeAccountConfig,
  FakeFault,
  FakeModelConfig,
  FakeServerOptions,
  FakeRequestRecord,
  FakeQuota,
  FakeDailyQuota,
  FakeFreeModelDailyRequests,
  FakeRecordedResponse,
  FakeRequestFilter,
  FakeAbortEvent,
  FakeKeyPatch,
  FakeAccountPatch,
  FakeOpenRouter,
} from './types.js';
export { startFakeOpenRouter } from './fake-server.js';
export { loadFixture, listFixtures, parseFixture } from './fixtures.js';
export type { OpenRouterFixture } from './fixtures.js';
