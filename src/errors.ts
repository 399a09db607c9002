// The one error class of vmpk, and the one table that maps the C core's
// negative codes (enum vmpk_error in native/include/vmpk.h) to stable strings.
import { getSystemErrorName } from 'node:util';
import { ObjectDefineProperty } from './primordials.js';

/** Stable string codes of {@link VmpkError}. */
export type VmpkErrorCode =
  // From the C core (see NATIVE_CODES below).
  | 'INVALID_ARGUMENT'
  | 'KEY_DESTROYED'
  | 'OUT_OF_MEMORY'
  | 'UNSUPPORTED_BACKEND'
  | 'KEYS_EXHAUSTED'
  | 'KEY_BUSY'
  | 'GATE_ORDER'
  | 'WINDOW_FULL'
  | 'NOT_A_REGION'
  | 'GATE_DEPTH'
  | 'NO_HARDWARE_KEYS'
  | 'SYSTEM'
  | 'TOO_MANY'
  | 'SECCOMP_FILTERED'
  // Found by the JavaScript layer before any native call.
  | 'RUNTIME_CLOSED'
  | 'WRONG_RUNTIME'
  | 'DOUBLE_FREE'
  | 'REGION_FREED'
  | 'ASYNC_IN_SYNC_GATE'
  | 'VIEW_TOO_LARGE'
  | 'LIBRARY_LOAD_FAILED'
  // Threads and async gates.
  | 'TIMEOUT'
  | 'ABORTED'
  | 'NOT_OWNER'
  // Code caches (codecache.ts).
  | 'UNSAFE_CODE'
  | 'CACHE_FULL'
  | 'CACHE_CLOSED'
  | 'CACHE_BUSY'
  | 'EMIT_NESTED'
  | 'EMIT_ENDED'
  | 'CODE_DISCARDED';

export class VmpkError extends Error {
  /** A stable string: branch on this, never on the message. */
  readonly code: VmpkErrorCode;
  /** The C core's negative code (enum vmpk_error) when the error came from it. */
  readonly nativeCode: number | undefined;
  /** For code 'SYSTEM': the errno of the failed system call. */
  readonly errno: number | undefined;
  /** For code 'UNSAFE_CODE': the offset in the code cache of the refused sequence's first byte. */
  readonly offset: number | undefined;

  constructor(code: VmpkErrorCode, message: string, extra?: { nativeCode?: number; errno?: number; offset?: number; cause?: unknown }) {
    super(message, extra?.cause === undefined ? undefined : { cause: extra.cause });
    // Defined, not assigned: an assignment would run a setter that other
    // code may have put on Error.prototype.name (vmpk makes errors inside
    // gates fn opened, when fn calls vmpk there).
    ObjectDefineProperty(this, 'name', { value: 'VmpkError', writable: true, enumerable: false, configurable: true });
    this.code = code;
    this.nativeCode = extra?.nativeCode;
    this.errno = extra?.errno;
    this.offset = extra?.offset;
  }
}

interface NativeCode {
  readonly code: VmpkErrorCode;
  /** What went wrong and what to do, used when the call site has nothing more precise. */
  readonly advice: string;
}

import { E_BUSY, E_FILTERED, E_GATE_DEPTH, E_GATE_ORDER, E_INVALID, E_KEYS_PINNED, E_NOMEM, E_NOT_REGION, E_NO_HW_KEYS, E_STALE, E_SYSTEM, E_TOO_MANY, E_UNSUPPORTED, E_WINDOW_FULL, MAX_GATE_DEPTH, MAX_RUNTIMES } from './codes.js';

/** enum vmpk_error -> code. The single place where native codes are interpreted. */
export const NATIVE_CODES: ReadonlyMap<number, NativeCode> = new Map<number, NativeCode>([
  [E_INVALID, { code: 'INVALID_ARGUMENT', advice: 'the native core rejected an argument (access, size, name or options)' }],
  [E_STALE, { code: 'KEY_DESTROYED', advice: 'the key was destroyed (or its runtime closed); create a new key' }],
  [E_NOMEM, { code: 'OUT_OF_MEMORY', advice: 'out of memory or address space; free regions or destroy keys, or raise the limits (ulimit -v, vm.max_map_count)' }],
  [E_UNSUPPORTED, { code: 'UNSUPPORTED_BACKEND', advice: "the requested backend is not available here; use backend 'auto' or 'mprotect'" }],
  [E_KEYS_PINNED, { code: 'KEYS_EXHAUSTED', advice: 'every hardware key is pinned by an open gate; close a gate on another key first, nest fewer gates on distinct keys, or raise maxHardwareKeys' }],
  [E_BUSY, { code: 'KEY_BUSY', advice: 'gates are open on it; wait until key.with() returns' }],
  [E_GATE_ORDER, { code: 'GATE_ORDER', advice: "gates must close in the reverse order of opening, on the thread that opened them" }],
  [E_WINDOW_FULL, { code: 'WINDOW_FULL', advice: "the key's address window has no room left; free regions of this key, or create the key with a larger windowSize" }],
  [E_NOT_REGION, { code: 'NOT_A_REGION', advice: 'the address is not the start of a live region of this key' }],
  [E_GATE_DEPTH, { code: 'GATE_DEPTH', advice: `gates are nested deeper than ${MAX_GATE_DEPTH} on this thread; nest fewer key.with() calls` }],
  [E_NO_HW_KEYS, { code: 'NO_HARDWARE_KEYS', advice: "the pku backend could not get a single hardware key (others in this process hold them all); use backend 'mprotect' or 'auto'" }],
  [E_SYSTEM, { code: 'SYSTEM', advice: 'an unexpected system call failure' }],
  [E_FILTERED, { code: 'SECCOMP_FILTERED', advice: 'hardened mode refused: a seccomp filter already in place makes a system call vmpk needs fail; open without harden, or drop that filter' }],
  [E_TOO_MANY, { code: 'TOO_MANY', advice: `too many live keys or open runtimes (at most ${MAX_RUNTIMES} runtimes at once), or of gates open on one key across threads (mprotect: 65,535 read, 32,767 read-write); destroy keys, close runtimes or end gates first` }],
]);

/**
 * The error for a failed native call. `where` names the call as the user wrote
 * it ("key.alloc(4096)"); `advice` replaces the table's generic advice where the
 * call site knows better. `errno` matters for SYSTEM only.
 */
export function nativeError(rc: number, where: string, advice?: string, errno?: number): VmpkError {
  const entry = NATIVE_CODES.get(rc);
  if (entry === undefined) {
    return new VmpkError('SYSTEM', `${where}: the native core returned the unknown code ${rc}; the JavaScript layer and libvmpk.so do not match (rebuild with npm run build)`, { nativeCode: rc });
  }
  if (entry.code === 'SYSTEM') {
    const e = errno ?? 0;
    let name = 'unknown errno';
    try {
      if (e > 0) name = getSystemErrorName(-e);
    } catch {
      // an errno Node does not know: keep the number alone
    }
    return new VmpkError('SYSTEM', `${where}: ${advice ?? entry.advice}: ${name} (errno ${e})`, { nativeCode: rc, errno: e });
  }
  return new VmpkError(entry.code, `${where}: ${advice ?? entry.advice}`, { nativeCode: rc });
}

export function invalidArgument(message: string): VmpkError {
  return new VmpkError('INVALID_ARGUMENT', message);
}

export function runtimeClosed(where: string): VmpkError {
  return new VmpkError('RUNTIME_CLOSED', `${where}: the runtime is closed; open a new one with open()`);
}

export function keyDestroyed(where: string, keyName: string | null): VmpkError {
  return new VmpkError('KEY_DESTROYED', `${where}: key ${quoteName(keyName)} was destroyed; its regions are gone, create a new key`);
}

/** How a key is named in messages: "secret" or (unnamed). */
export function quoteName(name: string | null): string {
  return name === null ? '(unnamed)' : JSON.stringify(name);
}

/** A short, exact description of a received value for messages. */
export function describe(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return value.length > 40 ? `${JSON.stringify(value.slice(0, 40))}... (a string of length ${value.length})` : JSON.stringify(value);
    case 'number':
      return Object.is(value, -0) ? '-0' : String(value);
    case 'bigint':
      return `${value}n`;
    case 'undefined':
      return 'undefined';
    case 'boolean':
      return String(value);
    case 'symbol':
      return value.toString();
    case 'function':
      return 'a function';
    default:
      if (value === null) return 'null';
      if (Array.isArray(value)) return 'an array';
      {
        const ctor = (value as { constructor?: { name?: unknown } }).constructor;
        const name = typeof ctor?.name === 'string' && ctor.name !== '' ? ctor.name : 'Object';
        return name === 'Object' ? 'an object' : `a ${name}`;
      }
  }
}
