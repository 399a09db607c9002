// vmpk: virtualized memory protection keys for Node.js. See docs/api.md.
export { open, pkuSupported, type OpenOptions } from './open.js';
export { hardenInfo, type HardenInfo } from './harden.js';
export { Runtime, type Backend, type Capabilities, type KeyOptions, type Stats } from './runtime.js';
export { Key, type NotPromise, type WithAsyncOptions } from './key.js';
export { KeyBatch, type KeysOptions } from './batch.js';
export { adopt, type KeyHandle, type RegionHandle, type RuntimeHandle } from './handle.js';
export { Region } from './region.js';
export { CodeCache, MAX_CODE_CACHE_SIZE, type CodeCacheOptions, type CodeEntry, type CodeFunction, type Emitter } from './codecache.js';
export { VmpkError, type VmpkErrorCode } from './errors.js';
export type { Access, GateAccess } from './access.js';
export { inspectProcess, inspectFile, inspectChunks, scanBytes, scanChunks, type InspectReport, type InspectProcessOptions, type Occurrence, type Verdict, type Skipped } from './inspect/index.js';

// Methods called on foreign objects throw INVALID_ARGUMENT (see brand.ts).
import { installBrandChecks } from './brand.js';
installBrandChecks();
