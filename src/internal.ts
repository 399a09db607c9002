// State shared between Runtime, Key and Region, never exported from the
// package: the native handles live here, out of users' reach. A Key or Region
// can only be made with the INTERNAL token, so none can be forged.
import type { Native } from './native.js';
import type { Runtime } from './runtime.js';
import type { Key } from './key.js';

export const INTERNAL: unique symbol = Symbol('vmpk.internal');

export interface RuntimeState {
  readonly n: Native;
  /** vmpk_runtime * as a number (x86-64 user addresses are below 2^47). */
  readonly rt: number;
  closed: boolean;
  readonly pageSize: number;
  runtime: Runtime;
}

export interface KeyState {
  readonly rs: RuntimeState;
  /** vmpk_key: nonzero, below 2^53. */
  readonly handle: number;
  readonly name: string | null;
  key: Key;
  destroyed: boolean;
  /** The process-wide access, enum vmpk_access. */
  access: number;
}

export function notConstructible(what: string, how: string): TypeError {
  return new TypeError(`${what} objects cannot be constructed directly; use ${how}`);
}
