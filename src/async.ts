// Asynchronous gates: key.withAsync(access, fn).
//
// A gate belongs to a thread, and PKRU belongs to a thread, not to a task:
// while fn awaits, other tasks run on the same thread. So an async gate is
// many synchronous gates, one around each piece of fn's own code:
//
//   withAsync()    vmpk_pin: the key stays on its hardware key until the end
//                  (waiting, if every hardware key is pinned)
//   first piece    vmpk_begin ... fn() runs until its first await ... vmpk_end
//   each later     an async_hooks `before` callback sees that the callback about
//   piece          to run belongs to fn (an AsyncLocalStorage store marks every
//                  async resource created while fn's code ran) and opens the
//                  gate (a hit: the key is pinned); `after` closes it
//   the end        vmpk_unpin, and this thread's waiters are woken
//
// Other tasks' callbacks carry no store, or another one, and run with the gate
// closed: on pku they fault, on mprotect too (the gate is closed around each
// await on both backends). Nested gates: a frame keeps the frame whose code
// called withAsync, and a piece opens the whole chain, outermost first.
//
// The hooks cost something for every async callback of the thread while any
// async gate is running, so they are enabled only then (and for 100 ms after
// the last one settled, since switching them costs about a microsecond).
import { Mutex } from 'async-mutex';
import { AsyncLocalStorage, createHook } from 'node:async_hooks';
import { VmpkError, describe, invalidArgument, nativeError, runtimeClosed } from './errors.js';
import { AsyncHookDisable, enableTrusted, popGate, pushGate, trustingEnables } from './gates.js';
import { closedNow, type KeyState, type RuntimeState } from './internal.js';
import { AsyncLocalStorageGetStore, AsyncLocalStorageRun, executionAsyncResource, isPromise, uncurryThis } from './primordials.js';
import { checkInteger, checkOptionsObject, rejectUnknownOptions } from './validate.js';

import { E_KEYS_PINNED } from './codes.js';

/** One key.withAsync() call. */
interface Frame {
  readonly ks: KeyState;
  readonly access: number;
  /** The running async gate whose code called withAsync, if any. */
  readonly parent: Frame | undefined;
  /** False once withAsync has settled: pieces of fn that still run (callbacks fn left behind) get no access. */
  active: boolean;
  /**
   * A gate that failed to open or close in a hook (hooks must not throw):
   * withAsync rejects with its error. Only the code is kept here: the error
   * is made after fn settled, never while a gate is open (making an Error
   * can run other code: a setter on Error.prototype.name, say).
   */
  failRc: number;
  failHow: string;
  readonly where: string;
}

const store = new AsyncLocalStorage<Frame>();
let running = 0; // active frames on this thread
/**
 * Pieces whose gates `before` opened and the matching `after` closes:
 * their async id and how many gates (the top of gates.ts's stack).
 */
const opened: Array<{ readonly id: number; count: number }> = [];
const ArrayPrototypePush = uncurryThis(Array.prototype.push) as <T>(a: T[], v: T) => number;
const ArrayPrototypePop = uncurryThis(Array.prototype.pop) as <T>(a: T[]) => T | undefined;

/** The frames of a piece's chain, outermost first: built before any gate opens. */
function chainOf(f: Frame): Frame[] {
  const out: Frame[] = [];
  for (let g: Frame | undefined = f; g !== undefined; g = g.parent) if (g.active && g.failRc === 0) ArrayPrototypePush(out, g);
  return out;
}

function fail(f: Frame, rc: number, how: string): void {
  if (f.failRc === 0) {
    f.failRc = rc;
    f.failHow = how;
  }
}

const hook = createHook({
  // Between vmpk_begin and the end of `before`, nothing runs but vmpk_begin,
  // reads of vmpk's own objects and writes to their own fields: no lookup
  // that other code could have replaced or hooked.
  before(asyncId) {
    const f = AsyncLocalStorageGetStore(store);
    if (f === undefined) return;
    // Only promise reactions (the pieces of fn after an await, and .then
    // callbacks fn chained) get a gate: an exception thrown there rejects a
    // promise. A timer or I/O callback that threw inside a gate would run
    // process 'uncaughtException' listeners (other code) with it open.
    if (!isPromise(executionAsyncResource())) return;
    const chain = chainOf(f);
    if (chain.length === 0) return;
    const entry = { id: asyncId, count: 0 };
    ArrayPrototypePush(opened, entry);
    // The chain, outermost first (reversed: chainOf starts at the innermost).
    for (let i = chain.length - 1; i >= 0; i--) {
      const g = chain[i]!;
      const rc = g.ks.rs.n.begin(g.ks.handle, g.access);
      if (rc === 0) {
        pushGate(g.ks, g.access);
        entry.count++;
      } else fail(g, rc, 'opening the gate for a piece of fn after an await');
    }
  },
  after(asyncId) {
    const n = opened.length;
    if (n === 0) return;
    const top = opened[n - 1]!;
    if (top.id !== asyncId) return;
    for (let c = top.count; c > 0; c--) {
      const ks = popGate()!;
      const rc = ks.rs.n.end(ks.handle);
      if (rc !== 0) fail(frameOf(ks), rc, 'closing the gate after a piece of fn');
    }
    ArrayPrototypePop(opened);
  },
});

/** The frame of the current piece whose key is ks (for an error report only). */
function frameOf(ks: KeyState): Frame {
  let f = AsyncLocalStorageGetStore(store);
  while (f !== undefined && f.ks !== ks) f = f.parent;
  return f ?? AsyncLocalStorageGetStore(store)!;
}

let enabled = false;
let idleTimer: NodeJS.Timeout | undefined;

/** How long the hooks stay on after the thread's last async gate settled: toggling them costs about as much as a gate. */
const IDLE_MS = 100;
const WARM = {} as Frame;
const noop = (): void => {};

// Node 20's AsyncLocalStorage propagates stores with one async hook of its
// own, shared by every store: enabled here once, through vmpk, it is marked
// as vmpk's, so that gates.ts never wraps it (a wrapped one would close and
// reopen the gates around every promise fn creates).
trustingEnables(() => {
  AsyncLocalStorageRun(store, WARM, noop);
  store.disable();
});

function started(): void {
  running++;
  if (!enabled) {
    enableTrusted(hook);
    // AsyncLocalStorage enables a hook of Node's own on first use: enable
    // it here, as vmpk's (gates.ts wraps hooks enabled by other code).
    trustingEnables(() => AsyncLocalStorageRun(store, WARM, noop));
    enabled = true;
  }
}

function disableIfIdle(): void {
  idleTimer = undefined;
  // No frame runs, so no callback of one is executing (this is a timer's)
  // and the stack of opened gates is empty: disabling now loses no `after`.
  if (running !== 0 || opened.length !== 0 || !enabled) return;
  trustingEnables(() => {
    AsyncHookDisable(hook);
    store.disable();
  });
  enabled = false;
}

function finished(): void {
  if (--running === 0 && idleTimer === undefined) {
    idleTimer = setTimeout(disableIfIdle, IDLE_MS);
    idleTimer.unref();
  }
}

// ---- waiting for a hardware key --------------------------------------------

interface PinWait {
  /** Waiters of this thread take turns in arrival order. */
  readonly line: Mutex;
  /** Wakes the waiter at the head of the line when this thread unpins. */
  wake: (() => void) | undefined;
}

function pinWait(rs: RuntimeState): PinWait {
  let w = rs.pinWait as PinWait | undefined;
  if (w === undefined) {
    w = { line: new Mutex(), wake: undefined };
    rs.pinWait = w;
  }
  return w;
}

/** Pins released by other threads, and by synchronous gates, are found by polling at most this often. */
const POLL_MAX_MS = 16;

export interface WaitOptions {
  timeout: number | undefined;
  signal: AbortSignal | undefined;
}

const WAIT_OPTIONS = ['timeout', 'signal'] as const;
const WAIT_ALIASES: Readonly<Record<string, string>> = {
  timeoutms: 'timeout',
  ms: 'timeout',
  wait: 'timeout',
  abortsignal: 'signal',
  abort: 'signal',
};

/** withAsync's options: { timeout?, signal? }. */
export function checkWaitOptions(options: unknown, where: string): WaitOptions {
  const o = checkOptionsObject(options, where);
  rejectUnknownOptions(o, WAIT_OPTIONS, where, WAIT_ALIASES);
  const timeout = o['timeout'] === undefined ? undefined : checkInteger(o['timeout'], "option 'timeout' (milliseconds)", where, 0, 2 ** 31 - 1);
  const s = o['signal'];
  if (s !== undefined && !(s instanceof AbortSignal)) throw invalidArgument(`${where}: option 'signal' must be an AbortSignal (from an AbortController), got ${describe(s)}`);
  return { timeout, signal: s as AbortSignal | undefined };
}

function aborted(where: string, signal: AbortSignal): VmpkError {
  return new VmpkError('ABORTED', `${where}: aborted while waiting for a hardware key (options.signal); fn did not run`, { cause: signal.reason });
}

/**
 * Waits until vmpk_pin succeeds, in this thread's line. Rejects with TIMEOUT,
 * ABORTED, or the error `fail` makes of another native code.
 */
async function waitForPin(ks: KeyState, where: string, options: WaitOptions, fail: (rc: number) => VmpkError, hardwareKeys: number): Promise<void> {
  const rs = ks.rs;
  const w = pinWait(rs);
  const { timeout, signal } = options;
  let cancel: ((err: VmpkError) => void) | undefined;
  const cancelled = new Promise<never>((_, reject) => (cancel = reject));
  cancelled.catch(() => {});
  const timer =
    timeout === undefined
      ? undefined
      : setTimeout(
          () =>
            cancel!(
              new VmpkError(
                'TIMEOUT',
                `${where}: no hardware key became free within ${timeout} ms: all ${hardwareKeys} stayed pinned by open gates (synchronous or async, on any thread); fn did not run. Hold fewer keys at once, or open the runtime with a larger maxHardwareKeys`,
              ),
            ),
          timeout,
        );
  const onAbort = () => cancel!(aborted(where, signal!));
  signal?.addEventListener('abort', onAbort, { once: true });
  let release: (() => void) | undefined;
  try {
    const turn = w.line.acquire();
    release = await Promise.race([turn, cancelled]);
    for (let delay = 1; ; delay = Math.min(2 * delay, POLL_MAX_MS)) {
      if (closedNow(rs)) throw runtimeClosed(where);
      const rc = rs.n.pin(rs.rt, ks.handle);
      if (rc === 0) return;
      if (rc !== E_KEYS_PINNED) throw fail(rc);
      let wake: () => void = () => {};
      const woken = new Promise<void>((resolve) => (wake = resolve));
      const poll = setTimeout(wake, delay);
      w.wake = wake;
      try {
        await Promise.race([woken, cancelled]);
      } finally {
        clearTimeout(poll);
        w.wake = undefined;
      }
    }
  } catch (err) {
    // Cancelled while still in line: leave the line as soon as our turn comes.
    if (release === undefined) void w.line.acquire().then((r) => r());
    throw err;
  } finally {
    release?.();
    if (timer !== undefined) clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

// ---- the gate ---------------------------------------------------------------

export interface GateErrors {
  /** The error of a failed vmpk_begin (or vmpk_pin). */
  gate(rc: number): VmpkError;
  /** The error of a failed vmpk_end. */
  end(rc: number): VmpkError;
}

/**
 * key.withAsync()'s body; arguments are checked. Runs fn's first piece
 * synchronously when the key can be pinned at once.
 */
export async function withAsync<T>(ks: KeyState, access: number, where: string, fn: () => T, options: WaitOptions, errors: GateErrors, hardwareKeys: number): Promise<Awaited<T>> {
  const rs = ks.rs;
  if (options.signal?.aborted) throw aborted(where, options.signal);
  const w = rs.pinWait as PinWait | undefined;
  // Join the line if others wait, so that waiters are served in order
  // (unless this call may not wait at all).
  const rc = w !== undefined && w.line.isLocked() && options.timeout !== 0 ? E_KEYS_PINNED : rs.n.pin(rs.rt, ks.handle);
  if (rc === E_KEYS_PINNED) {
    if (options.timeout === 0) throw new VmpkError('TIMEOUT', `${where}: every hardware key (${hardwareKeys}) is pinned by open gates and options.timeout is 0; fn did not run`);
    await waitForPin(ks, where, options, errors.gate, hardwareKeys);
  } else if (rc !== 0) {
    throw errors.gate(rc);
  }

  let parent = store.getStore();
  while (parent !== undefined && !parent.active) parent = parent.parent;
  const frame: Frame = { ks, access, parent, active: true, failRc: 0, failHow: '', where };
  started();
  let failure: VmpkError | undefined;
  const failed = (): VmpkError | undefined => (failure ??= frame.failRc === 0 ? undefined : nativeError(frame.failRc, `${where}: ${frame.failHow}`));
  try {
    // The first piece: fn until its first await, inside a plain gate, opened
    // inside store.run() so that AsyncLocalStorage's own work (and whatever
    // it touches) runs before the gate opens and after it closes.
    let gateRc = 0;
    let endRc = 0;
    let result: T;
    try {
      result = AsyncLocalStorageRun(store, frame, () => {
      gateRc = rs.n.begin(ks.handle, access);
      if (gateRc !== 0) return undefined as T;
      pushGate(ks, access);
      let r: T;
      try {
        r = fn();
      } catch (err) {
        popGate();
        endRc = rs.n.end(ks.handle);
        throw err;
      }
      popGate();
      endRc = rs.n.end(ks.handle);
      return r;
    });
    } catch (err) {
      if (endRc !== 0) throw withCause(errors.end(endRc), err);
      throw err;
    }
    if (gateRc !== 0) throw errors.gate(gateRc);
    if (endRc !== 0) throw errors.end(endRc);
    const value = await result;
    const e = failed();
    if (e !== undefined) throw e;
    return value;
  } catch (err) {
    const e = failed();
    if (e !== undefined && err !== e) throw withCause(e, err);
    throw err;
  } finally {
    frame.active = false;
    finished();
    const rcUnpin = rs.n.unpin(rs.rt, ks.handle);
    pinWait(rs).wake?.();
    // vmpk_unpin fails only for a key that is not pinned: a bug, not the caller's.
    if (rcUnpin !== 0) throw new VmpkError('SYSTEM', `${where}: vmpk_unpin failed with ${rcUnpin} after fn settled; please report this`, { nativeCode: rcUnpin });
  }
}

function withCause(err: VmpkError, cause: unknown): VmpkError {
  if (err.cause === undefined) Object.defineProperty(err, 'cause', { value: cause, configurable: true, writable: true });
  return err;
}
