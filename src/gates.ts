// The gates vmpk holds open on this thread, as a stack mirrored from the C
// core's, and the guard that keeps other code out of them.
//
// Node runs other code synchronously inside a gate without fn asking for
// it: the async_hooks callbacks of other modules (init when fn creates a
// promise or a timer, before/after around the pieces of an async gate,
// promiseResolve) and V8's promise hooks (v8.promiseHooks). Node calls them
// in the order they were enabled, so no ordering of vmpk's own hook keeps
// them out. Instead, every such callback enabled after vmpk was imported is
// wrapped: when a vmpk gate is open on the thread, the wrapper closes vmpk's
// gates (innermost first), runs the callback, and opens them again
// (outermost first). The foreign callback runs with no access; fn's access
// is back when control returns to fn. Callbacks enabled before vmpk was
// imported are not reached (docs/security.md): code that ran before vmpk
// loaded is trusted, as it could also have replaced the built-ins that
// primordials.ts captures.
import { createHook } from 'node:async_hooks';
import { promiseHooks } from 'node:v8';
import type { KeyState } from './internal.js';
import { ReflectApply, uncurryThis } from './primordials.js';

/** Deeper than the core allows (32 gates a thread): every open gate fits. */
const MAX = 64;
const keys: (KeyState | null)[] = new Array<KeyState | null>(MAX).fill(null);
const access = new Int32Array(MAX);
/** Open gates on this thread, and the first of them that the running code may use (above a suspended stretch). */
let depth = 0;
let base = 0;

/** Records a gate vmpk_begin just opened. Own elements only: no Array.prototype setter can run. */
export function pushGate(ks: KeyState, a: number): void {
  if (depth < MAX) {
    keys[depth] = ks;
    access[depth] = a;
  }
  depth++;
}

/** Forgets the innermost gate (call before its vmpk_end). */
export function popGate(): KeyState | null {
  depth--;
  if (depth < 0 || depth >= MAX) return null;
  const ks = keys[depth]!;
  keys[depth] = null;
  return ks;
}

/** Gates open for the running code. */
export function openGates(): number {
  return depth - base;
}

/**
 * Runs `fn` with every vmpk gate of this thread closed, then reopens them.
 * A gate that cannot be reopened (its key destroyed meanwhile) stays
 * closed: the code after it faults rather than reads (fail closed).
 */
function suspended<R>(fn: (...args: unknown[]) => R, self: unknown, args: unknown[]): R {
  const savedBase = base;
  const saved = depth;
  for (let i = saved - 1; i >= savedBase; i--) {
    const ks = keys[i]!;
    ks.rs.n.end(ks.handle);
  }
  base = saved;
  try {
    return ReflectApply(fn, self, args) as R;
  } finally {
    base = savedBase;
    for (let i = savedBase; i < saved; i++) {
      const ks = keys[i]!;
      ks.rs.n.begin(ks.handle, access[i]!);
    }
  }
}

const guarded = new WeakSet<object>();
const WeakSetHas = uncurryThis(WeakSet.prototype.has) as (s: WeakSet<object>, v: object) => boolean;
const WeakSetAdd = uncurryThis(WeakSet.prototype.add) as (s: WeakSet<object>, v: object) => WeakSet<object>;

/** `fn` wrapped to run outside vmpk's gates; the same function when it already is. */
export function guard<F extends (...args: never[]) => unknown>(fn: F): F {
  if (WeakSetHas(guarded, fn)) return fn;
  const g = function (this: unknown, ...args: unknown[]): unknown {
    if (depth === base) return ReflectApply(fn, this, args);
    return suspended(fn as unknown as (...a: unknown[]) => unknown, this, args);
  };
  WeakSetAdd(guarded, g);
  return g as unknown as F;
}

// ---- async_hooks: every hook enabled after this point is guarded -----------

const AsyncHookPrototype = Object.getPrototypeOf(createHook({})) as { enable(): unknown; disable(): unknown };
/** The unpatched enable: vmpk's own hooks go through it. */
export const AsyncHookEnable = uncurryThis(AsyncHookPrototype.enable) as (hook: object) => unknown;
export const AsyncHookDisable = uncurryThis(AsyncHookPrototype.disable) as (hook: object) => unknown;
/** Hooks vmpk itself enables (its own, and Node's AsyncLocalStorage hook it causes): not wrapped. */
const trusted = new WeakSet<object>();
let trusting = 0;

/** Runs fn; a hook enabled meanwhile (AsyncLocalStorage's, by store.run) is vmpk's and not wrapped. */
export function trustingEnables<R>(fn: () => R): R {
  trusting++;
  try {
    return fn();
  } finally {
    trusting--;
  }
}

export function enableTrusted(hook: object): void {
  WeakSetAdd(trusted, hook);
  trustingEnables(() => AsyncHookEnable(hook));
}

const ObjectGetOwnPropertySymbols = Object.getOwnPropertySymbols;
// Enabling or disabling a hook makes Node (re)register its own promise-hook
// dispatchers through v8.promiseHooks: those are Node's, not to be wrapped
// (they call vmpk's own before/after), hence trustingEnables around the
// unpatched calls.
Object.defineProperty(AsyncHookPrototype, 'enable', {
  configurable: true,
  writable: true,
  enumerable: false,
  value: function enable(this: Record<symbol, unknown>) {
    if (trusting > 0) WeakSetAdd(trusted, this);
    if (!WeakSetHas(trusted, this)) {
      // The callbacks live on Symbol(init), Symbol(before), ...: own symbol properties.
      const syms = ObjectGetOwnPropertySymbols(this);
      for (let i = 0; i < syms.length; i++) {
        const s = syms[i]!;
        const v = this[s];
        if (typeof v === 'function') this[s] = guard(v as (...args: never[]) => unknown);
      }
    }
    return trustingEnables(() => AsyncHookEnable(this));
  },
});
Object.defineProperty(AsyncHookPrototype, 'disable', {
  configurable: true,
  writable: true,
  enumerable: false,
  value: function disable(this: object) {
    return trustingEnables(() => AsyncHookDisable(this));
  },
});

// ---- V8's promise hooks ------------------------------------------------------

type PromiseHookFn = (...args: never[]) => unknown;
const ph = promiseHooks as unknown as Record<string, (arg: unknown) => unknown>;
for (const name of ['onInit', 'onBefore', 'onAfter', 'onSettled'] as const) {
  const orig = ph[name]!;
  ph[name] = function (hook: unknown) {
    return ReflectApply(orig, this, [typeof hook === 'function' && trusting === 0 ? guard(hook as PromiseHookFn) : hook]);
  };
}
{
  const orig = ph['createHook']!;
  ph['createHook'] = function (hooks: unknown) {
    let arg = hooks;
    if (hooks !== null && typeof hooks === 'object' && trusting === 0) {
      const h = hooks as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const k of ['init', 'before', 'after', 'settled']) {
        const v = h[k];
        out[k] = typeof v === 'function' ? guard(v as PromiseHookFn) : v;
      }
      arg = out;
    }
    return ReflectApply(orig, this, [arg]);
  };
}
