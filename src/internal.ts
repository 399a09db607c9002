// State shared between Runtime, Key and Region, never exported from the
// package: the native handles live here, out of users' reach. A Key or Region
// can only be made with the INTERNAL token, so none can be forged.
import type { Native } from './native.js';
import type { Runtime } from './runtime.js';
import type { Key } from './key.js';
import type { Region } from './region.js';

export const INTERNAL: unique symbol = Symbol('vmpk.internal');

export interface RuntimeState {
  readonly n: Native;
  /** vmpk_runtime * as a number (x86-64 user addresses are below 2^47). */
  readonly rt: number;
  /**
   * Closed, as far as this thread knows. The owner sets it in close(); an
   * adopted runtime learns it from `shared` (see closedNow()), and its gates
   * from the core, which answers VMPK_E_STALE for every key of a closed runtime.
   */
  closed: boolean;
  readonly pageSize: number;
  runtime: Runtime;
  /** True for the Runtime that open() returned: only it may close(). */
  readonly owner: boolean;
  /** Names this open runtime across threads (handles, the adopted-runtime registry). */
  readonly id: string;
  /** Shared with every thread that adopted it: [0] is 1 once the owner closed it. */
  readonly shared: Int32Array;
  /** Async gates waiting for a hardware key on this thread (async.ts), made on first use. */
  pinWait: unknown;
}

export interface KeyState {
  readonly rs: RuntimeState;
  /** vmpk_key: nonzero, below 2^53. */
  readonly handle: number;
  readonly name: string | null;
  key: Key;
  destroyed: boolean;
  /** The process-wide access, enum vmpk_access, as last set through this thread. */
  access: number;
  /** Live regions allocated through this Key object or adopted with it, made on first alloc. */
  regions: Set<Region> | undefined;
  /** A handle was made of it, or it was adopted: other threads may free its regions or destroy it. */
  shared: boolean;
}

/** The runtime's closed state, reading the owner's flag for adopted runtimes. */
export function closedNow(rs: RuntimeState): boolean {
  if (!rs.closed && Atomics.load(rs.shared, 0) !== 0) rs.closed = true;
  return rs.closed;
}

/**
 * Open runtimes known to this thread, by id: the ones it opened and the ones
 * it adopted, so that adopting two keys of one runtime gives one Runtime.
 */
export const knownRuntimes = new Map<string, WeakRef<RuntimeState>>();

export function notConstructible(what: string, how: string): TypeError {
  return new TypeError(`${what} objects cannot be constructed directly; use ${how}`);
}
