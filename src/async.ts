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
import { closedNow, type KeyState, type RuntimeState } from './internal.js';
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
  /** A gate that failed to open or close in a hook (hooks must not throw): withAsync rejects with it. */
  error: VmpkError | undefined;
  readonly where: string;
}

const store = new AsyncLocalStorage<Frame>();
let running = 0; // active frames on this thread
/** Gates opened by `before`, closed by the matching `after`. */
const opened: Array<{ readonly id: number; readonly frames: Frame[] }> = [];

function openChain(f: Frame, out: Frame[], fail: (f: Frame, rc: number, how: string) => void): void {
  if (f.parent !== undefined) openChain(f.parent, out, fail);
  if (!f.active || f.error !== undefined) return;
  const rs = f.ks.rs;
  const rc = rs.n.begin(f.ks.handle, f.access);
  if (rc === 0) out.push(f);
  else fail(f, rc, 'opening the gate for a piece of fn after an await');
}

function closeFrames(frames: Frame[], fail: (f: Frame, rc: number, how: string) => void): void {
  for (let i = frames.length - 1; i >= 0; i--) {
    const f = frames[i]!;
    const rs = f.ks.rs;
    const rc = rs.n.end(f.ks.handle);
    if (rc !== 0) fail(f, rc, 'closing the gate after a piece of fn');
  }
}

function makeError(f: Frame, rc: number, how: string): void {
  f.error ??= nativeError(rc, `${f.where}: ${how}`);
}

const hook = createHook({
  before(asyncId) {
    const f = store.getStore();
    if (f === undefined) return;
    const frames: Frame[] = [];
    openChain(f, frames, makeError);
    if (frames.length !== 0) opened.push({ id: asyncId, frames });
  },
  after(asyncId) {
    const top = opened[opened.length - 1];
    if (top === undefined || top.id !== asyncId) return;
    opened.pop();
    closeFrames(top.frames, makeError);
  },
});

let enabled = false;
let idleTimer: NodeJS.Timeout | undefined;

/** How long the hooks stay on after the thread's last async gate settled: toggling them costs about as much as a gate. */
const IDLE_MS = 100;

function started(): void {
  running++;
  if (!enabled) {
    hook.enable();
    enabled = true;
  }
}

function disableIfIdle(): void {
  idleTimer = undefined;
  // No frame runs, so no callback of one is executing (this is a timer's)
  // and the stack of opened gates is empty: disabling now loses no `after`.
  if (running !== 0 || opened.length !== 0 || !enabled) return;
  hook.disable();
  store.disable();
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
  const frame: Frame = { ks, access, parent, active: true, error: undefined, where };
  started();
  try {
    // The first piece: fn until its first await, inside a plain gate.
    const rcBegin = rs.n.begin(ks.handle, access);
    if (rcBegin !== 0) throw errors.gate(rcBegin);
    let result: T;
    try {
      result = store.run(frame, fn);
    } catch (err) {
      const rcEnd = rs.n.end(ks.handle);
      if (rcEnd !== 0) throw withCause(errors.end(rcEnd), err);
      throw err;
    }
    const rcEnd = rs.n.end(ks.handle);
    if (rcEnd !== 0) throw errors.end(rcEnd);
    const value = await result;
    if (frame.error !== undefined) throw frame.error;
    return value;
  } catch (err) {
    if (frame.error !== undefined && err !== frame.error) throw withCause(frame.error, err);
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
