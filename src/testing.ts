export type {
  FakeKeyConfig,
  FakeAccountConfig,
  FakeFault,
  FakeModelConfig,
  FakeServerOptions,
  FakeRequestRecord,
} from './testing/types.js';
