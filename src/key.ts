// A Key: a virtual key (vkey) of the C core, with its gates, its process-wide
// access and its regions.
import { accessName, parseAccess, parseGateAccess, type Access, type GateAccess } from './access.js';
import { checkWaitOptions, withAsync } from './async.js';
import { VmpkError, describe, invalidArgument, keyDestroyed, nativeError, quoteName, runtimeClosed } from './errors.js';
import { popGate, pushGate } from './gates.js';
import { makeKeyHandle, type KeyHandle } from './handle.js';
import { INTERNAL, closedNow, notConstructible, type KeyState } from './internal.js';
import { Region, endKeyViews } from './region.js';
import type { Runtime } from './runtime.js';
import { badNameCharacter, checkInteger } from './validate.js';

import { E_BUSY, E_GATE_DEPTH, E_KEYS_PINNED, E_NO_HW_KEYS, E_STALE, E_SYSTEM, E_WINDOW_FULL, MAX_GATE_DEPTH, MAX_NAME_BYTES, MAX_WINDOW_SIZE } from './codes.js';

const NO_WAIT_OPTIONS = Object.freeze({ timeout: undefined, signal: undefined });

/**
 * T, or never where T is (or may be) a promise or other thenable: key.with()'s
 * fn must not return one, and a `() => Promise<X>` is not a `() => never`.
 */
export type NotPromise<T> = T extends PromiseLike<unknown> ? never : T;

export interface WithAsyncOptions {
  /** Milliseconds to wait for a hardware key when every one is pinned; then TIMEOUT. Default: no limit. 0: do not wait. */
  timeout?: number;
  /** Aborts the wait for a hardware key (ABORTED, with the signal's reason as cause). fn's own code is not interrupted. */
  signal?: AbortSignal;
}

export class Key {
  readonly #ks: KeyState;
  /** vmpk_gate_index of the handle, made by the first with(); -1 before, 0: none. */
  #ix = -1;

  /** @internal Keys are made by runtime.createKey(). */
  constructor(token: typeof INTERNAL, ks: KeyState) {
    if (token !== INTERNAL) throw notConstructible('Key', 'runtime.createKey()');
    this.#ks = ks;
  }

  /** The name given to createKey(), printed in fault reports; null if none. */
  get name(): string | null {
    return this.#ks.name;
  }

  get runtime(): Runtime {
    return this.#ks.rs.runtime;
  }

  /**
   * The key's process-wide access: what every thread may do outside gates,
   * as last set through this Key object (or its handle's value, for an
   * adopted key: protect() on another thread does not update it here).
   */
  get access(): Access {
    return accessName(this.#ks.access);
  }

  /**
   * True after destroy() or after the runtime closed. A key destroyed through
   * another thread's Key object reads true here once a call on this one
   * found it destroyed.
   */
  get destroyed(): boolean {
    return this.#ks.destroyed || closedNow(this.#ks.rs);
  }

  /** The live regions allocated through this Key object, or adopted with it. */
  get regions(): Region[] {
    const ks = this.#ks;
    if (ks.destroyed || closedNow(ks.rs) || ks.regions === undefined) return [];
    return [...ks.regions];
  }

  #check(where: string): KeyState {
    const ks = this.#ks;
    if (closedNow(ks.rs)) throw runtimeClosed(where);
    if (ks.destroyed) throw keyDestroyed(where, ks.name);
    return ks;
  }

  #fail(rc: number, where: string, advice?: string): VmpkError {
    return keyError(this.#ks, rc, where, advice);
  }

  /**
   * A plain, structured-cloneable object naming the key, its runtime and the
   * regions in key.regions, for a worker thread of this process to pass to
   * adopt(). Views are not part of it: the worker makes its own with
   * region.bytes. The handle carries the key's generation: once the key is
   * destroyed, every use of it anywhere throws KEY_DESTROYED.
   */
  handle(): KeyHandle {
    const ks = this.#check('key.handle()');
    ks.shared = true;
    return makeKeyHandle(ks);
  }

  /**
   * Allocates `size` bytes (rounded up to whole pages), zeroed, in the key's
   * address window. The region is accessible exactly as the key's other pages.
   */
  alloc(size: number): Region {
    const where = 'key.alloc()';
    const bytes = checkInteger(size, 'size', where, 1, MAX_WINDOW_SIZE);
    const ks = this.#check(where);
    const out: [bigint] = [0n];
    const rc = ks.rs.n.alloc(ks.rs.rt, ks.handle, bytes, out);
    if (rc !== 0) {
      const advice =
        rc === E_WINDOW_FULL
          ? `key ${quoteName(ks.name)} has no room left for ${bytes} bytes in its address window; free regions of this key, or create the key with a larger windowSize (runtime.capabilities.windowSize is the default)`
          : undefined;
      throw this.#fail(rc, `key.alloc(${bytes})`, advice);
    }
    const region = new Region(INTERNAL, ks, out[0], bytes);
    (ks.regions ??= new Set()).add(region);
    return region;
  }

  /**
   * A synchronous gate: the calling thread gets `access` to the key's pages
   * (on top of the process-wide access) while `fn` runs; the gate closes when
   * fn returns or throws. Returns fn's result. Gates nest; on pku an inner
   * gate may grant less than an outer one. fn must not return a promise
   * (ASYNC_IN_SYNC_GATE at run time; a type error at compile time, since the
   * gate would close at fn's first `await`): use key.withAsync() for those.
   */
  with<T>(access: GateAccess, fn: () => NotPromise<T>): T;
  with<T>(access: GateAccess, fn: () => T): T {
    // 'rw' and 'r' first: the common case costs two comparisons.
    const a = access === 'rw' ? 3 : access === 'r' ? 1 : parseGateAccess(access, 'key.with()');
    if (typeof fn !== 'function') throw invalidArgument(`key.with(): fn must be a function, got ${describe(fn)}`);
    const ks = this.#ks;
    const rs = ks.rs;
    // rs.closed, not closedNow(): an adopted runtime closed by its owner
    // fails in vmpk_begin (VMPK_E_STALE), which gateError() reports.
    if (rs.closed) throw runtimeClosed('key.with()');
    if (ks.destroyed) throw closedNow(rs) ? runtimeClosed('key.with()') : keyDestroyed('key.with()', ks.name);
    // The gate by its 32-bit index where the key has one (native.ts): the
    // cheapest call koffi makes; the C side checks it as it checks the handle.
    let ix = this.#ix;
    if (ix < 0) ix = this.#ix = rs.n.gateIndex(ks.handle);
    const rc = ix === 0 ? rs.n.begin(ks.handle, a) : a === 3 ? rs.n.enterRw(ix) : rs.n.enterR(ix);
    if (rc !== 0) throw gateError(ks, rc, `key.with('${access}')`);
    // Between begin and end nothing runs but fn: the gate is recorded
    // (gates.ts) so that other modules' hooks fn triggers run outside it.
    pushGate(ks, a);
    let result: T;
    try {
      result = fn();
    } catch (err) {
      popGate();
      const rcEnd = ix === 0 ? rs.n.end(ks.handle) : rs.n.leaveIndex(ix);
      if (rcEnd !== 0) throw this.#endError(rcEnd, access, err);
      throw err;
    }
    popGate();
    const rcEnd = ix === 0 ? rs.n.end(ks.handle) : rs.n.leaveIndex(ix);
    if (rcEnd !== 0) throw this.#endError(rcEnd, access, undefined);
    if (result !== null && (typeof result === 'object' || typeof result === 'function') && typeof (result as { then?: unknown }).then === 'function') {
      // The rest of that async function runs after the gate closed. Keep its
      // rejection from surfacing as an unrelated unhandled rejection: this
      // error is the report.
      if (result instanceof Promise) result.catch(() => {});
      throw new VmpkError(
        'ASYNC_IN_SYNC_GATE',
        `key.with('${access}'): fn returned a promise, but key.with() is a synchronous gate: it closed when fn returned, so code after fn's first await runs without access (and faults if it touches the key's memory). Use key.withAsync() for async functions, or do the protected work synchronously`,
      );
    }
    return result;
  }

  /**
   * An asynchronous gate: keeps the key pinned to its hardware key while
   * `fn` runs, awaits included, and gives the calling thread `access` while
   * fn's own code runs: its synchronous start, and every piece after an
   * await (or in a callback fn scheduled). Other tasks that run on this
   * thread while fn awaits get no access, on both backends. Resolves with
   * fn's result; rejects with what fn throws or rejects with.
   *
   * When every hardware key is pinned (pku), it waits for one, in arrival
   * order, at most `options.timeout` ms (TIMEOUT), until `options.signal`
   * aborts (ABORTED); fn has not run then. Costs an async_hooks callback
   * pair for every async callback of the thread while any async gate runs,
   * and a gate (on mprotect: two mprotect calls) per piece of fn.
   */
  withAsync<T>(access: GateAccess, fn: () => T, options?: WithAsyncOptions): Promise<Awaited<T>> {
    // Not an async method: one promise less per call. Errors reject all the same.
    let a: number;
    let wait: ReturnType<typeof checkWaitOptions>;
    let ks: KeyState;
    try {
      a = parseGateAccess(access, 'key.withAsync()');
      if (typeof fn !== 'function') throw invalidArgument(`key.withAsync(): fn must be a function, got ${describe(fn)}`);
      wait = options === undefined ? NO_WAIT_OPTIONS : checkWaitOptions(options, 'key.withAsync()');
      ks = this.#check('key.withAsync()');
    } catch (err) {
      return Promise.reject(err);
    }
    const where = `key.withAsync('${access}')`;
    const hw = ks.rs.runtime.capabilities.hardwareKeys;
    return withAsync(ks, a, where, fn, wait, { gate: (rc) => gateError(ks, rc, where), end: (rc) => keyError(ks, rc, `${where}: closing the gate`) }, hw);
  }

  #endError(rc: number, access: string, cause: unknown): VmpkError {
    const err = this.#fail(rc, `key.with('${access}'): closing the gate`);
    if (cause !== undefined) Object.defineProperty(err, 'cause', { value: cause, configurable: true, writable: true });
    return err;
  }

  /** Sets the key's process-wide access, for every thread, like mprotect(2). */
  protect(access: Access): void {
    const a = parseAccess(access, 'key.protect()');
    const ks = this.#check('key.protect()');
    const rc = ks.rs.n.protect(ks.rs.rt, ks.handle, a);
    if (rc !== 0) throw this.#fail(rc, `key.protect('${access}')`);
    ks.access = a;
  }

  /**
   * Destroys the key: every region of it is freed, its pages become
   * inaccessible to every thread and their contents are discarded. The
   * views its regions' `bytes` made are detached (Node 22+); a window with
   * views left (Node 20, or other threads') is given to no later key until
   * they are collected. Throws
   * KEY_BUSY inside a gate on this key, KEY_DESTROYED when called twice.
   */
  destroy(): void {
    const ks = this.#check('key.destroy()');
    const rc = ks.rs.n.keyDestroy(ks.rs.rt, ks.handle);
    if (rc !== 0) {
      const advice = rc === E_BUSY ? `a gate on key ${quoteName(ks.name)} is open (on some thread), or key.withAsync() pins it; destroy the key after they return` : undefined;
      throw this.#fail(rc, 'key.destroy()', advice);
    }
    ks.destroyed = true;
    ks.regions = undefined;
    endKeyViews(ks);
  }
}

/**
 * The error of a failed native call on a key. VMPK_E_STALE means the key was
 * destroyed (maybe through another thread) or its runtime closed (maybe by
 * the owner in another thread): this thread's objects learn it here.
 */
function keyError(ks: KeyState, rc: number, where: string, advice?: string): VmpkError {
  if (rc === E_STALE) {
    if (closedNow(ks.rs)) return runtimeClosed(where);
    ks.destroyed = true;
    ks.regions = undefined;
    endKeyViews(ks);
    return nativeError(rc, where, `key ${quoteName(ks.name)} was destroyed${ks.shared ? ' (maybe through another thread)' : ''}; its regions are gone, create a new key`);
  }
  return nativeError(rc, where, advice, rc === E_SYSTEM ? ks.rs.n.lastErrno() : undefined);
}

export function gateError(ks: KeyState, rc: number, where: string): VmpkError {
  if (rc === E_KEYS_PINNED) {
    const hw = ks.rs.runtime.capabilities.hardwareKeys;
    return keyError(ks, rc, where, `every hardware key (${hw}) is pinned by an open gate, so key ${quoteName(ks.name)} cannot be made resident; nest gates on fewer distinct keys, or open the runtime with a larger maxHardwareKeys (key.withAsync() waits for a key instead)`);
  }
  if (rc === E_GATE_DEPTH) return keyError(ks, rc, where, `gates are nested deeper than ${MAX_GATE_DEPTH} on this thread; nest fewer key.with() calls`);
  if (rc === E_NO_HW_KEYS) return keyError(ks, rc, where, "this runtime could not get a single hardware key: other runtimes of the process (or other code) hold them all; close those runtimes, or open this one with backend 'mprotect'");
  return keyError(ks, rc, where);
}

/** Validates the name of a key: printed in fault reports, kept to 63 bytes by the core. */
export function checkKeyName(value: unknown, where: string): string | null {
  if (value === undefined) return null;
  if (typeof value !== 'string') throw invalidArgument(`${where}: name must be a string, got ${describe(value)}`);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > MAX_NAME_BYTES) throw invalidArgument(`${where}: name must be at most ${MAX_NAME_BYTES} bytes of UTF-8 (it is kept for fault reports), got ${bytes} bytes`);
  const bad = badNameCharacter(value);
  if (bad !== undefined) throw invalidArgument(`${where}: name must not contain ${bad}: it is printed on one line in fault reports; got ${describe(value)}`);
  return value;
}

/** The most address space one window may take: all of vmpk's arena (4 TiB). */
export { MAX_WINDOW_SIZE };

/** Window sizes: whole bytes, 1 to 4 TiB; the core rounds up to whole MiB. */
export function checkWindowSize(value: unknown, what: string, where: string): number {
  return checkInteger(value, what, where, 1, MAX_WINDOW_SIZE);
}
