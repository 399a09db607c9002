// A Region: page-granular memory owned by a key (vmpk_alloc / vmpk_free).
import { kMaxLength } from 'node:buffer';
import { VmpkError, keyDestroyed, nativeError, runtimeClosed } from './errors.js';
import { INTERNAL, closedNow, notConstructible, type KeyState } from './internal.js';
import type { Key } from './key.js';
import { E_SYSTEM } from './codes.js';

/**
 * The largest view: Node 20 makes ArrayBuffers and typed arrays of at most
 * 4 GiB (buffer.kMaxLength), and koffi asked for more ends the process with
 * a napi fatal error rather than throw.
 */
export const MAX_VIEW = Math.min(kMaxLength, 2 ** 32);

let keyStateOf: (r: Region) => KeyState;

/** @internal The KeyState of a region (not exported from the package). */
export function regionKeyState(r: Region): KeyState {
  return keyStateOf(r);
}

export class Region {
  static {
    keyStateOf = (r) => r.#ks;
  }
  readonly #ks: KeyState;
  readonly #address: bigint;
  readonly #size: number;
  readonly #mappedSize: number;
  #freed = false;
  #bytes: Uint8Array | undefined;

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
    if (ks.shared) this.#checkLive();
    b = new Uint8Array(ks.rs.n.view(this.#address, this.#size));
    this.#bytes = b;
    return b;
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
   * the key's later allocations; a Uint8Array kept from `bytes` still points
   * there. A second free() throws DOUBLE_FREE.
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
    this.#bytes = undefined;
    ks.regions?.delete(this);
  }
}

function regionFreed(where: string): VmpkError {
  return new VmpkError('REGION_FREED', `${where}: the region was freed; allocate a new one with key.alloc()`);
}
