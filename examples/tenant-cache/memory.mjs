// Where tenants' items live. Two kinds, one interface:
//   vmpk:  each tenant is a vmpk key with one region; its memory is closed
//          to everyone, and a request opens it for the calling thread only
//          while the handler runs (a synchronous key.with() per request).
//   plain: isolation off; tenants are slices of shared ArrayBuffers, packed
//          one after another as a C allocator would, and a "gate" is a call.
import { adopt, open } from '../../dist/index.js';

/**
 * @typedef {object} TenantMemory
 * @property {number} size bytes of memory the tenant may use
 * @property {() => Uint8Array} bytes the tenant's memory (allocated on first use)
 * @property {<T>(fn: () => T) => T} read runs fn with read access
 * @property {<T>(fn: () => T) => T} write runs fn with read and write access
 */

/** A tenant that is a vmpk key with one region: its gates and address. */
class KeyTenant {
  read(fn) {
    return this.key.with('r', fn);
  }

  write(fn) {
    return this.key.with('rw', fn);
  }

  /** The address of the tenant's first byte (for the fault injection). */
  address() {
    this.bytes();
    return this.region.address;
  }
}

class VmpkTenant extends KeyTenant {
  constructor(rt, name, size) {
    super();
    this.size = size;
    this.key = rt.createKey({ name, windowSize: size });
    this.region = null;
    this.view = null;
  }

  bytes() {
    if (this.view === null) {
      this.region = this.key.alloc(this.size);
      this.view = this.region.bytes;
    }
    return this.view;
  }

  /** --threads: what a worker needs to use this tenant (its key's handle, the region allocated now). */
  share() {
    this.bytes();
    return { kind: 'vmpk', size: this.size, key: this.key.handle() };
  }
}

/** A worker's side of a VmpkTenant: the same key and region, adopted. */
class AdoptedTenant extends KeyTenant {
  constructor(d) {
    super();
    this.size = d.size;
    this.key = adopt(d.key);
    this.region = this.key.regions[0];
    this.view = this.region.bytes;
  }

  bytes() {
    return this.view;
  }
}

// Plain tenants share big buffers, so memory past one tenant's end is the
// next tenant's: what an out-of-bounds write would reach without isolation.
const CHUNK = 64 << 20;

class PlainTenant {
  constructor(heap, size) {
    this.size = size;
    this.heap = heap;
    this.view = null;
  }

  bytes() {
    if (this.view === null) {
      this.view = this.heap.take(this.size);
      this.chunk = this.heap.chunks;
    }
    return this.view;
  }

  share() {
    const v = this.bytes();
    return { kind: 'plain', size: this.size, buffer: v.buffer, offset: v.byteOffset, chunk: this.chunk };
  }

  read(fn) {
    return fn();
  }

  write(fn) {
    return fn();
  }
}

class PlainHeap {
  constructor(shared = false) {
    this.shared = shared; // --threads: SharedArrayBuffers, which workers can see
    this.buffer = null;
    this.used = 0;
  }

  take(size) {
    if (this.buffer === null || this.used + size > this.buffer.byteLength) {
      this.chunks = (this.chunks ?? 0) + 1;
      this.buffer = this.shared ? new SharedArrayBuffer(Math.max(CHUNK, size)) : new ArrayBuffer(Math.max(CHUNK, size));
      this.used = 0;
    }
    const view = new Uint8Array(this.buffer, this.used, size);
    this.used += size;
    return view;
  }
}

/**
 * @param {{ isolation: 'vmpk' | 'off', backend?: 'auto' | 'pku' | 'mprotect', maxHardwareKeys?: number, shared?: boolean }} options
 *   shared: tenants will be handed to worker threads (--threads)
 */
export function createMemory(options) {
  if (options.isolation === 'off') {
    const heap = new PlainHeap(options.shared ?? false);
    return {
      isolation: 'off',
      backend: 'none',
      runtime: null,
      tenant: (_name, size) => new PlainTenant(heap, size),
      stats: () => null,
      share: () => ({ isolation: 'off' }),
      close() {},
    };
  }
  const openOptions = {};
  if (options.backend !== undefined) openOptions.backend = options.backend;
  if (options.maxHardwareKeys !== undefined) openOptions.maxHardwareKeys = options.maxHardwareKeys;
  const rt = open(openOptions);
  return {
    isolation: 'vmpk',
    backend: rt.backend,
    pkruStubbed: rt.capabilities.pkruStubbed,
    runtime: rt,
    tenant: (name, size) => new VmpkTenant(rt, name, size),
    stats: () => rt.stats(),
    share: () => ({ isolation: 'vmpk', backend: rt.backend, pkruStubbed: rt.capabilities.pkruStubbed, runtime: rt.handle() }),
    close: () => rt.close(),
  };
}

/**
 * A worker's memory: the main thread's (`memory.share()`), whose tenants it
 * takes with `tenant(description)`; it creates none and closes nothing.
 */
export function adoptMemory(d) {
  if (d.isolation === 'off') {
    // One JavaScript object per shared chunk, as in the main thread, so that
    // neighbouring tenants are slices of one buffer here too (the fault injection relies on it).
    const chunks = new Map();
    return {
      isolation: 'off',
      backend: 'none',
      runtime: null,
      tenant(t) {
        if (!chunks.has(t.chunk)) chunks.set(t.chunk, t.buffer);
        const buffer = chunks.get(t.chunk);
        const view = new Uint8Array(buffer, t.offset, t.size);
        return { size: t.size, bytes: () => view, read: (fn) => fn(), write: (fn) => fn() };
      },
      stats: () => null,
      close() {},
    };
  }
  const rt = adopt(d.runtime);
  return {
    isolation: 'vmpk',
    backend: d.backend,
    pkruStubbed: d.pkruStubbed,
    runtime: rt,
    tenant: (t) => new AdoptedTenant(t),
    stats: () => rt.stats(),
    close() {},
  };
}
