// A CodeCache: executable memory for a JIT, on an executable key of the C
// core (VMPK_KEY_EXEC). Every thread may run its code at all times; it is
// written only inside emit(), which opens the key 'rw' for the calling
// thread alone (pku; on mprotect the pages stop executing for everyone while
// an emit runs, W^X), and emit() ends with commit(): the new bytes are
// gathered outside any gate, scanned for WRPKRU and XRSTOR, and only safe
// code is copied in, by a gate in which nothing but vmpk's captured
// built-ins runs (see emit()).
import { VMPK_READ, VMPK_RW } from './access.js';
import { VmpkError, describe, invalidArgument, quoteName, runtimeClosed } from './errors.js';
import { INTERNAL, closedNow, notConstructible, type KeyState, type RuntimeState } from './internal.js';
import { isXrstorModrm } from './inspect/scan.js';
import { Key, checkKeyName, gateError } from './key.js';
import { KEY_EXEC, type NativeCode } from './native.js';
import type { Region } from './region.js';
import { checkInteger, checkOptionsObject, rejectUnknownOptions } from './validate.js';
import { isUint8Array, BigIntCtor, NumberIsSafeInteger, ObjectFreeze, TypedArrayPrototypeFill, TypedArrayPrototypeGetLength, TypedArrayPrototypeSet, TypedArrayPrototypeSubarray } from './primordials.js';

export interface CodeCacheOptions {
  /** Printed in fault reports; at most 63 bytes of UTF-8. */
  name?: string;
  /** Bytes of code it can hold, rounded up to whole pages; 1 to 2 ** 30. */
  size: number;
}

/** Code that emit() committed: where it lies in the cache. */
export interface CodeEntry {
  /** Offset of its first byte in the cache (a multiple of 16). */
  readonly offset: number;
  /** Bytes written. */
  readonly size: number;
  /** Address of its first byte. */
  readonly address: bigint;
}

/** What emit()'s writer function gets: it appends code to this emit. */
export interface Emitter {
  /** Cache offset where this emit's code starts. */
  readonly offset: number;
  /** Bytes written so far. */
  readonly length: number;
  /** Bytes that still fit. */
  readonly available: number;
  /** Appends bytes; returns the cache offset of the first one. */
  write(bytes: ArrayLike<number>): number;
  /** Overwrites bytes this emit already wrote, from cache offset `at` (a jump's displacement, say). */
  patch(at: number, bytes: ArrayLike<number>): void;
}

/** A function over committed code: call it, or run it on a libuv pool thread with async(). */
export interface CodeFunction {
  (...args: unknown[]): unknown;
  /** The same call on a libuv pool thread: a thread that never opened a gate. */
  async(...args: unknown[]): Promise<unknown>;
}

/** The largest cache: 1 GiB of code is far beyond any JIT's working set. */
export const MAX_CODE_CACHE_SIZE = 2 ** 30;
/** Each emit starts on a 16-byte boundary, as compilers align functions. */
const ALIGN = 16;
/** INT3: what padding, refused code and discarded code become. */
const TRAP = 0xcc;
/** A WRPKRU or XRSTOR is 3 bytes: 2 bytes before an emit can start one that ends in it. */
const SPAN_BEFORE = 2;

const OPTIONS = ['name', 'size'] as const;
const ALIASES: Readonly<Record<string, string>> = { bytes: 'size', length: 'size', capacity: 'size', label: 'name' };

export class CodeCache {
  readonly #ks: KeyState;
  readonly #key: Key;
  readonly #region: Region;
  readonly #size: number;
  #view: Uint8Array | undefined;
  /** Bytes in use: committed code and the padding before each entry. */
  #top = 0;
  /** Committed entries, by offset. */
  #entries: CodeEntry[] = [];
  /** Bumped by reset(): functions made before it throw CODE_DISCARDED. */
  #generation = 0;
  #emitting = false;
  #closed = false;
  #asyncCalls = 0;

  /** @internal Code caches are made by runtime.createCodeCache(). */
  constructor(token: typeof INTERNAL, ks: KeyState, region: Region, size: number) {
    if (token !== INTERNAL) throw notConstructible('CodeCache', 'runtime.createCodeCache()');
    this.#ks = ks;
    this.#key = ks.key;
    this.#region = region;
    this.#size = size;
  }

  get name(): string | null {
    return this.#ks.name;
  }

  /** Its capacity in bytes (whole pages). */
  get size(): number {
    return this.#size;
  }

  /** Address of its first byte. */
  get address(): bigint {
    return this.#region.address;
  }

  /** Bytes in use, padding included: the next emit starts at or after it. */
  get used(): number {
    return this.#top;
  }

  /** The committed entries, in cache order. */
  get entries(): CodeEntry[] {
    return [...this.#entries];
  }

  /** True after close() or after its runtime closed. */
  get closed(): boolean {
    return this.#closed || this.#key.destroyed;
  }

  #check(where: string): void {
    if (closedNow(this.#ks.rs)) throw runtimeClosed(where);
    if (this.#closed || this.#ks.destroyed) throw new VmpkError('CACHE_CLOSED', `${where}: code cache ${quoteName(this.#ks.name)} is closed; create a new one with runtime.createCodeCache()`);
    if (this.#emitting) throw new VmpkError('EMIT_NESTED', `${where}: code cache ${quoteName(this.#ks.name)} is inside its own emit on this thread; finish that emit first (an emit cannot nest, reset or close its cache)`);
  }

  #bytes(): Uint8Array {
    return (this.#view ??= this.#region.bytes);
  }

  /**
   * Writes code and commits it. `code` is the bytes, or a function that
   * writes them through an Emitter, into a staging buffer: the writer runs
   * with the cache closed. Then commit(): the bytes are scanned for WRPKRU
   * (0F 01 EF) and XRSTOR (0F AE /5), also where they would span the end of
   * the previous entry; a hit is refused with UNSAFE_CODE and its cache
   * offset, and nothing of the emit reaches the cache. Safe code is copied
   * in by one gate 'rw' for the calling thread (pku: for it alone; mprotect:
   * the pages stop being executable for every thread meanwhile) in which
   * nothing but vmpk's captured built-ins runs. A writer that throws
   * abandons the emit the same way.
   */
  emit(code: ArrayLike<number> | ((emitter: Emitter) => void)): CodeEntry {
    const where = 'codeCache.emit()';
    const writer = typeof code === 'function' ? code : undefined;
    const bytes = writer === undefined ? checkBytes(code, 'code', where, this.#size) : undefined;
    this.#check(where);
    const start = Math.ceil(this.#top / ALIGN) * ALIGN;
    const size = this.#size;
    if (bytes !== undefined && TypedArrayPrototypeGetLength(bytes) > size - start) throw this.#full(where, TypedArrayPrototypeGetLength(bytes), start);
    const view = this.#bytes();
    // The code is gathered in a staging buffer of vmpk's own, outside any
    // gate: the writer (and every getter, Proxy or replaced built-in it may
    // reach) never runs while the cache is writable. The staging buffer is
    // scanned, and only then copied in by one gate that runs nothing but
    // captured built-ins (primordials.ts) on vmpk's own buffers: no code can
    // change the bytes between the scan and the copy, nor after it.
    // It grows by doubling (an emit is usually far smaller than the cache).
    let staging = new Uint8Array(Math.min(size - start, 256));
    const room = (n: number): void => {
      const cap = TypedArrayPrototypeGetLength(staging);
      if (n <= cap) return;
      const grown = new Uint8Array(Math.min(size - start, Math.max(n, 2 * cap)));
      TypedArrayPrototypeSet(grown, staging, 0);
      staging = grown;
    };
    let length = 0;
    let open = true;
    const emitter: Emitter = {
      offset: start,
      get length() {
        return length;
      },
      get available() {
        return size - start - length;
      },
      write: (b) => {
        const w = 'emitter.write()';
        if (!open) throw emitEnded(w);
        const src = checkBytes(b, 'bytes', w, size);
        const n = TypedArrayPrototypeGetLength(src);
        if (n > size - start - length) throw this.#full(w, n, start + length);
        room(length + n);
        TypedArrayPrototypeSet(staging, src, length);
        length += n;
        return start + length - n;
      },
      patch: (at, b) => {
        const w = 'emitter.patch()';
        if (!open) throw emitEnded(w);
        const src = checkBytes(b, 'bytes', w, size);
        const n = TypedArrayPrototypeGetLength(src);
        const off = checkInteger(at, 'at', w, start, start + length);
        if (off + n > start + length) throw invalidArgument(`${w}: ${n} bytes at offset ${off} reach past what this emit wrote (offsets ${start} to ${start + length - 1}); write() them instead`);
        TypedArrayPrototypeSet(staging, src, off - start);
      },
    };
    this.#emitting = true;
    try {
      if (bytes !== undefined) emitter.write(bytes);
      else {
        const r = writer!(emitter) as unknown;
        if (r !== null && typeof r === 'object' && typeof (r as { then?: unknown }).then === 'function') {
          if (r instanceof Promise) r.catch(() => {});
          throw new VmpkError('ASYNC_IN_SYNC_GATE', `${where}: the writer returned a promise, but an emit is synchronous: write the code before returning`);
        }
      }
    } finally {
      open = false;
      this.#emitting = false;
    }
    if (length === 0) throw invalidArgument(`${where}: the emit wrote no bytes; there is nothing to commit`);
    this.#check(where); // the writer may have closed the cache or its runtime
    const top = this.#top;
    // The scan, outside any gate (the cache is readable by every thread).
    // Padding (INT3) breaks every sequence, so the two bytes before the emit
    // matter only when it starts right at the end of the previous entry.
    const prefix = start === top && start >= SPAN_BEFORE ? TypedArrayPrototypeSubarray(view, start - SPAN_BEFORE, start) : EMPTY;
    commitScan(prefix, staging, length, start);
    const entry: CodeEntry = ObjectFreeze({ offset: start, size: length, address: this.#region.address + BigIntCtor(start) });
    const ks = this.#ks;
    const n = ks.rs.n;
    // The one gate: nothing but captured built-ins on vmpk's own buffers runs in it.
    const rc = n.begin(ks.handle, VMPK_RW);
    if (rc !== 0) throw gateError(ks, rc, `${where}: opening the cache 'rw'`);
    TypedArrayPrototypeFill(view, TRAP, top, start);
    TypedArrayPrototypeSet(view, TypedArrayPrototypeSubarray(staging, 0, length), start);
    const rcEnd = n.end(ks.handle);
    if (rcEnd !== 0) throw gateError(ks, rcEnd, `${where}: closing the cache's gate`);
    this.#entries[this.#entries.length] = entry;
    this.#top = start + length;
    return entry;
  }

  #full(where: string, bytes: number, at: number): VmpkError {
    return new VmpkError('CACHE_FULL', `${where}: ${bytes} bytes do not fit at offset ${at} of code cache ${quoteName(this.#ks.name)} (${this.#size} bytes, ${Math.max(0, this.#size - at)} free); reset() it, or create a larger one`);
  }

  /**
   * A JS function over committed code at `offset` (inside an entry; an
   * entry's own offset for its first instruction), of the C function type
   * `signature`, in koffi's syntax without a name: 'int64_t (int64_t,
   * int64_t)'. The code must follow the System V x86-64 calling convention
   * for that type: vmpk cannot check what the code does.
   */
  function(offset: number, signature: string): CodeFunction {
    const where = 'codeCache.function()';
    const off = this.#codeAt(offset, signature, where);
    const fn: NativeCode = this.#ks.rs.n.codeFunction(this.#region.address + BigInt(off), signature);
    const generation = this.#generation;
    const callable = (w: string, duringEmit: boolean) => {
      if (generation !== this.#generation) throw new VmpkError('CODE_DISCARDED', `${w}: code cache ${quoteName(this.#ks.name)} was reset() after this function was made; its code is gone`);
      if (duringEmit && this.#emitting && !closedNow(this.#ks.rs) && !this.#ks.destroyed) return;
      this.#check(w);
    };
    // Not inside its own cache's emit on this thread (on mprotect its pages
    // do not execute then); on a pool thread, yes: other threads may run
    // the code during an emit (mprotect: they wait the emit out in faults).
    const call = (...args: unknown[]): unknown => {
      callable('code function', false);
      try {
        return fn.call(...args);
      } catch (err) {
        throw badArguments(err, signature, 'code function');
      }
    };
    call.async = async (...args: unknown[]): Promise<unknown> => {
      callable('code function async()', true);
      this.#asyncCalls++;
      try {
        return await fn.callAsync(args);
      } catch (err) {
        throw badArguments(err, signature, 'code function async()');
      } finally {
        this.#asyncCalls--;
      }
    };
    return call;
  }

  /**
   * One call of committed code at `offset` with `args`: what function()
   * gives, without making a function (koffi spends microseconds on that),
   * for code that runs once or rarely. Same checks and errors.
   */
  call(offset: number, signature: string, ...args: unknown[]): unknown {
    const off = this.#codeAt(offset, signature, 'codeCache.call()');
    try {
      return this.#ks.rs.n.callCode(this.#region.address + BigInt(off), signature, args);
    } catch (err) {
      throw badArguments(err, signature, 'codeCache.call()');
    }
  }

  /** Checks function() and call()'s arguments; returns the offset. */
  #codeAt(offset: number, signature: string, where: string): number {
    this.#check(where);
    const off = checkInteger(offset, 'offset', where, 0, this.#size - 1);
    if (typeof signature !== 'string') throw invalidArgument(`${where}: signature must be a string such as 'int64_t (int64_t, int64_t)', got ${describe(signature)}`);
    if (!this.#inEntry(off)) {
      throw invalidArgument(`${where}: offset ${off} is not inside committed code of code cache ${quoteName(this.#ks.name)} (${this.#entries.length} entries, the last ending at ${this.#top})`);
    }
    try {
      this.#ks.rs.n.checkSignature(signature);
    } catch (err) {
      throw new VmpkError('INVALID_ARGUMENT', `${where}: signature ${describe(signature)} is not a C function type koffi understands (${(err as Error).message}); write it as 'RESULT (ARG, ...)', e.g. 'int64_t (int64_t, int64_t)'`, { cause: err });
    }
    return off;
  }

  /** Whether `offset` lies inside a committed entry (they are sorted by offset). */
  #inEntry(offset: number): boolean {
    const e = this.#entries;
    let lo = 0;
    let hi = e.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (e[mid]!.offset + e[mid]!.size <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo < e.length && e[lo]!.offset <= offset;
  }

  /** A copy of `length` bytes from `offset`: to look at emitted code. */
  read(offset: number, length: number): Uint8Array {
    const where = 'codeCache.read()';
    this.#check(where);
    const off = checkInteger(offset, 'offset', where, 0, this.#size);
    const len = checkInteger(length, 'length', where, 0, this.#size - off);
    return this.#bytes().slice(off, off + len);
  }

  #idle(where: string): void {
    this.#check(where);
    if (this.#asyncCalls > 0) throw new VmpkError('CACHE_BUSY', `${where}: ${this.#asyncCalls} async call(s) of code cache ${quoteName(this.#ks.name)} are running on pool threads; await them first`);
  }

  /** Discards all code (it becomes INT3) and starts again at offset 0; functions made before throw CODE_DISCARDED. */
  reset(): void {
    this.#idle('codeCache.reset()');
    const view = this.#bytes();
    const top = this.#top;
    const ks = this.#ks;
    const rc = ks.rs.n.begin(ks.handle, VMPK_RW);
    if (rc !== 0) throw gateError(ks, rc, "codeCache.reset(): opening the cache 'rw'");
    TypedArrayPrototypeFill(view, TRAP, 0, top);
    const rcEnd = ks.rs.n.end(ks.handle);
    if (rcEnd !== 0) throw gateError(ks, rcEnd, "codeCache.reset(): closing the cache's gate");
    this.#generation++;
    this.#entries = [];
    this.#top = 0;
  }

  /** Frees the cache: its key and memory. Idempotent; functions made from it throw CACHE_CLOSED. */
  close(): void {
    if (this.#closed || this.#key.destroyed) {
      this.#closed = true;
      return;
    }
    this.#idle('codeCache.close()');
    this.#key.destroy();
    this.#closed = true;
    this.#view = undefined;
  }
}

/** koffi's error for arguments that do not fit the signature, as INVALID_ARGUMENT. */
function badArguments(err: unknown, signature: string, where: string): VmpkError {
  return new VmpkError('INVALID_ARGUMENT', `${where}: the arguments do not fit signature ${describe(signature)}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

const EMPTY = new Uint8Array(0);

/**
 * commit()'s scan: throws UNSAFE_CODE for the first WRPKRU (0F 01 EF) or
 * XRSTOR (0F AE /5, memory operand) that lies, at least partly, in the
 * `length` new bytes of `code`; `prefix` is the (0 to 2) cache bytes just
 * before them. Plain indexing only: no method that other code could replace
 * decides what the scan sees.
 */
function commitScan(prefix: Uint8Array, code: Uint8Array, length: number, start: number): void {
  const p = TypedArrayPrototypeGetLength(prefix);
  const total = p + length;
  const at = (i: number): number => (i < p ? prefix[i]! : code[i - p]!);
  for (let i = 0; i + 2 < total; i++) {
    if (at(i) !== 0x0f) continue;
    const b1 = at(i + 1);
    const b2 = at(i + 2);
    let what: string | undefined;
    if (b1 === 0x01 && b2 === 0xef) what = 'WRPKRU (0F 01 EF)';
    else if (b1 === 0xae && isXrstorModrm(b2)) what = `XRSTOR (0F AE, ModRM 0x${b2.toString(16)})`;
    if (what === undefined) continue;
    const offset = start - p + i;
    const inEmit = offset >= start ? `byte ${offset - start} of this emit` : `spanning the end of the previous entry into this emit`;
    throw new VmpkError(
      'UNSAFE_CODE',
      `codeCache.emit(): commit refused the code: ${what} at cache offset ${offset} (${inEmit}); it could change this thread's PKRU and open every key. Nothing of the emit was written to the cache`,
      { offset },
    );
  }
}

function emitEnded(where: string): VmpkError {
  return new VmpkError('EMIT_ENDED', `${where}: this emitter's emit has ended; write code only inside the function given to emit()`);
}

/** Bytes: a Uint8Array, or an array-like of integers from 0 to 255. */
function checkBytes(value: unknown, what: string, where: string, max: number): Uint8Array {
  // isUint8Array, not instanceof: a Proxy or a forged prototype is not a Uint8Array.
  if (isUint8Array(value)) return value;
  if (value === null || typeof value !== 'object' || typeof (value as { length?: unknown }).length !== 'number' || ArrayBuffer.isView(value)) {
    throw invalidArgument(`${where}: ${what} must be a Uint8Array or an array of bytes (integers from 0 to 255), got ${describe(value)}`);
  }
  const a = value as ArrayLike<unknown>;
  const n = a.length;
  if (!NumberIsSafeInteger(n) || n < 0) throw invalidArgument(`${where}: ${what}.length must be a whole number of bytes, got ${describe(n)}`);
  if (n > max) throw invalidArgument(`${where}: ${what} has ${n} bytes, more than the whole code cache holds (${max} bytes)`);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const b = a[i];
    if (typeof b !== 'number' || !Number.isInteger(b) || b < 0 || b > 255) throw invalidArgument(`${where}: ${what}[${i}] must be an integer from 0 to 255, got ${describe(b)}`);
    out[i] = b;
  }
  return out;
}

/** runtime.createCodeCache(): an executable key, read-only for every thread, and one region of `size` bytes. */
export function createCodeCache(rs: RuntimeState, options: unknown, fail: (rc: number, where: string) => VmpkError): CodeCache {
  const where = 'runtime.createCodeCache()';
  if (options === undefined) throw invalidArgument(`${where}: options must be an object with a size, e.g. { size: 65536 }`);
  const o = checkOptionsObject(options, where);
  rejectUnknownOptions(o, OPTIONS, where, ALIASES);
  const name = checkKeyName(o['name'], where);
  if (o['size'] === undefined) throw invalidArgument(`${where}: size is required: the bytes of code the cache holds, e.g. { size: 65536 }`);
  const size = checkInteger(o['size'], 'size', where, 1, MAX_CODE_CACHE_SIZE);
  if (closedNow(rs)) throw runtimeClosed(where);
  const bytes = Math.ceil(size / rs.pageSize) * rs.pageSize;
  const out: [number] = [0];
  const rc = rs.n.keyCreate(rs.rt, name, VMPK_READ | KEY_EXEC, bytes, out);
  if (rc !== 0) throw fail(rc, where);
  const ks: KeyState = { rs, handle: out[0], name, key: undefined as unknown as Key, destroyed: false, access: VMPK_READ, regions: undefined, shared: false };
  ks.key = new Key(INTERNAL, ks);
  let region: Region;
  try {
    region = ks.key.alloc(bytes);
  } catch (err) {
    ks.key.destroy();
    throw err;
  }
  return new CodeCache(INTERNAL, ks, region, bytes);
}
