// A Region: page-granular memory owned by a key (vmpk_alloc / vmpk_free).
import { kMaxLength } from 'node:buffer';
import { VmpkError, keyDestroyed, nativeError, runtimeClosed } from './errors.js';
import { INTERNAL, closedNow, notConstructible, type KeyState, type RuntimeState } from './internal.js';
import type { Key } from './key.js';
import { E_SYSTEM } from './codes.js';
import type { Native } from './native.js';

/**
 * The largest view: Node 20 makes ArrayBuffers and typed arrays of at most
 * 4 GiB (buffer.kMaxLength), and koffi asked for more ends the process with
 * a napi fatal error rather than throw.
 */
export const MAX_VIEW = Math.min(kMaxLength, 2 ** 32);

let keyStateOf: (r: Region) => KeyState;

/**
 * ArrayBuffer.prototype.transfer (Node 22+): transfer(0) detaches a view
 * without reading its memory (a new empty buffer gets the 0 bytes copied),
 * so it is safe over a key's PROT_NONE pages. Node 20 has no way to detach
 * an external buffer: there the quarantine alone keeps stale views closed.
 */
const transfer = (ArrayBuffer.prototype as { transfer?: (this: ArrayBuffer, n?: number) => ArrayBuffer }).transfer;
/** True where vmpk detaches a region's views on free(), destroy() and close(). */
export const DETACHES_VIEWS = typeof transfer === 'function';

/** A view vmpk made: its hold on the window (vmpk_view_hold) until released. */
interface ViewRecord {
  readonly n: Native;
  readonly address: bigint;
  ref: WeakRef<ArrayBuffer> | undefined; // undefined once released
}

// A view collected before vmpk detached it gives its hold back here; that
// is what lets a quarantined window (Node 20) return to reuse.
const collected = new FinalizationRegistry<ViewRecord>((rec) => {
  if (rec.ref === undefined) return;
  rec.ref = undefined;
  rec.n.viewHold(rec.address, -1);
});

/**
 * Ends a view: detaches it where Node allows (the hold is released at once),
 * else leaves it to the FinalizationRegistry (the window stays quarantined
 * until the view is collected). Never reads the viewed memory.
 */
function endView(rec: ViewRecord): void {
  const ab = rec.ref?.deref();
  if (rec.ref === undefined || !DETACHES_VIEWS) return;
  if (ab !== undefined && !(ab as { detached?: boolean }).detached) transfer!.call(ab, 0);
  // unregister() is false when the registry already gave the hold back.
  if (collected.unregister(rec)) {
    rec.ref = undefined;
    rec.n.viewHold(rec.address, -1);
  }
}

// The regions with a view, per key, and the keys with one, per runtime: what
// destroy() and close() detach.
const viewedRegions = new WeakMap<KeyState, Set<Region>>();
const viewedKeys = new WeakMap<RuntimeState, Set<KeyState>>();
let dropViewOf: (r: Region) => void;

/** @internal Ends the views of every region of a destroyed key (key.ts). */
export function endKeyViews(ks: KeyState): void {
  const regions = viewedRegions.get(ks);
  viewedRegions.delete(ks);
  viewedKeys.get(ks.rs)?.delete(ks);
  if (regions !== undefined) for (const r of regions) dropViewOf(r);
}

/** @internal Ends the views of every key of a closed runtime (runtime.ts). */
export function endRuntimeViews(rs: RuntimeState): void {
  const keys = viewedKeys.get(rs);
  viewedKeys.delete(rs);
  if (keys !== undefined) for (const ks of keys) endKeyViews(ks);
}

/** @internal The KeyState of a region (not exported from the package). */
export function regionKeyState(r: Region): KeyState {
  return keyStateOf(r);
}

export class Region {
  static {
    keyStateOf = (r) => r.#ks;
    dropViewOf = (r) => r.#dropView();
  }
  readonly #ks: KeyState;
  readonly #address: bigint;
  readonly #size: number;
  readonly #mappedSize: number;
  #freed = false;
  #bytes: Uint8Array | undefined;
  #view: ViewRecord | undefined;

  /** @internal Regions are made by key.alloc(). */
  constructor(token: typeof INTERNAL, ks: KeyState, address: bigint, size: number) {
    if (token !== INTERNAL) throw notConstructible('Region', 'key.alloc(size)');
    this.#ks = ks;
    this.#address = address;
    this.#size = size;
    const page = ks.rs.pageSize;
    this.#mappedSize = Math.ceil(size / page) * page;
  }

  /** The address of the region's first byte. Stays readable after free(). */
  get address(): bigint {
    return this.#address;
  }

  /** The size asked of key.alloc(), in bytes: the length of `bytes`. */
  get size(): number {
    return this.#size;
  }

  /** The bytes the region occupies: size rounded up to whole pages. */
  get mappedSize(): number {
    return this.#mappedSize;
  }

  get key(): Key {
    return this.#ks.key;
  }

  /** True after free(), after its key was destroyed, or after its runtime closed (as far as this thread has seen). */
  get freed(): boolean {
    return this.#freed || this.#ks.destroyed || closedNow(this.#ks.rs);
  }

  /**
   * A Uint8Array over the region's memory (zero-copy), made once and cached.
   * Touching it outside a gate that grants the access, while the key's
   * process-wide access does not, kills the process by SIGSEGV.
   */
  get bytes(): Uint8Array {
    let b = this.#bytes;
    if (b !== undefined && !this.#freed && !this.#ks.destroyed && !this.#ks.rs.closed) return b;
    const ks = this.#ks;
    if (closedNow(ks.rs)) throw runtimeClosed('region.bytes');
    if (ks.destroyed) throw keyDestroyed('region.bytes', ks.name);
    if (this.#freed) throw regionFreed('region.bytes');
    if (this.#size > MAX_VIEW) {
      throw new VmpkError('VIEW_TOO_LARGE', `region.bytes: the region is ${this.#size} bytes, and this Node.js makes typed arrays of at most ${MAX_VIEW} bytes; use regions of at most ${MAX_VIEW} bytes where you need a view`);
    }
    const n = ks.rs.n;
    // The hold first, then the liveness check: a hold taken on a window
    // another thread's destroy() freed in between fails, or is caught by
    // #checkLive (the key is no longer live) and given back.
    const rc = n.viewHold(this.#address, 1);
    if (rc !== 0) {
      if (rc === -2 && ks.shared && !closedNow(ks.rs)) this.#checkLive();
      throw nativeError(rc, 'region.bytes');
    }
    if (ks.shared) {
      try {
        this.#checkLive();
      } catch (err) {
        n.viewHold(this.#address, -1);
        throw err;
      }
    }
    let ab: ArrayBuffer;
    try {
      ab = n.view(this.#address, this.#size);
    } catch (err) {
      n.viewHold(this.#address, -1);
      throw err;
    }
    const rec: ViewRecord = { n, address: this.#address, ref: new WeakRef(ab) };
    collected.register(ab, rec, rec);
    this.#view = rec;
    let regions = viewedRegions.get(ks);
    if (regions === undefined) {
      viewedRegions.set(ks, (regions = new Set()));
      let keys = viewedKeys.get(ks.rs);
      if (keys === undefined) viewedKeys.set(ks.rs, (keys = new Set()));
      keys.add(ks);
    }
    regions.add(this);
    b = new Uint8Array(ab);
    this.#bytes = b;
    return b;
  }

  /** Drops this region's view: detached where Node allows (see endView). */
  #dropView(): void {
    const rec = this.#view;
    this.#view = undefined;
    this.#bytes = undefined;
    viewedRegions.get(this.#ks)?.delete(this);
    if (rec !== undefined) endView(rec);
  }

  /**
   * For a key other threads use: asks the core whether the region is still
   * a live region of this key (another thread may have freed it, destroyed
   * the key or closed the runtime) before a view is made over it.
   */
  #checkLive(): void {
    const ks = this.#ks;
    const out = { key: 0, region: 0n, size: 0 };
    const rc = ks.rs.n.lookup(ks.rs.rt, this.#address, out);
    if (rc === 0 && out.key === ks.handle && out.region === this.#address) return;
    if (closedNow(ks.rs)) throw runtimeClosed('region.bytes');
    this.#freed = true;
    ks.regions?.delete(this);
    throw new VmpkError('REGION_FREED', `region.bytes: the region at 0x${this.#address.toString(16)} is no longer a live region of key ${ks.name === null ? '(unnamed)' : JSON.stringify(ks.name)}: it was freed, or the key destroyed, through another thread`);
  }

  /**
   * Frees the region. Its pages are zeroed and stay in the key's domain for
   * the key's later allocations. On Node 22+ the view `bytes` made is
   * detached (a kept Uint8Array has length 0); on Node 20 a kept one still
   * points there (the same key's later regions). A second free() throws
   * DOUBLE_FREE.
   */
  free(): void {
    const ks = this.#ks;
    const where = 'region.free()';
    if (ks.rs.closed) throw runtimeClosed(where);
    if (ks.destroyed) throw keyDestroyed(where, ks.name);
    if (this.#freed) throw new VmpkError('DOUBLE_FREE', `${where}: the region at 0x${this.#address.toString(16)} was already freed`);
    const rc = ks.rs.n.free(ks.rs.rt, ks.handle, this.#address);
    if (rc !== 0) throw nativeError(rc, where, undefined, rc === E_SYSTEM ? ks.rs.n.lastErrno() : undefined);
    this.#freed = true;
    this.#dropView();
    ks.regions?.delete(this);
  }
}

function regionFreed(where: string): VmpkError {
  return new VmpkError('REGION_FREED', `${where}: the region was freed; allocate a new one with key.alloc()`);
}
