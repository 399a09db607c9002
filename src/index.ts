// vmpk: virtualized memory protection keys for Node.js. See docs/api.md.
export { open, pkuSupported, type OpenOptions } from './open.js';
export { hardenInfo, type HardenInfo } from './harden.js';
export { Runtime, type Backend, type Capabilities, type KeyOptions, type Stats } from './runtime.js';
export { Key, type WithAsyncOptions } from './key.js';
export { adopt, type KeyHandle, type RegionHandle, type RuntimeHandle } from './handle.js';
export { Region } from './region.js';
export { VmpkError, type VmpkErrorCode } from './errors.js';
export type { Access, GateAccess } from './access.js';
export { inspectProcess, inspectFile, inspectChunks, scanBytes, scanChunks, type InspectReport, type InspectProcessOptions, type Occurrence, type Verdict, type Skipped } from './inspect/index.js';
