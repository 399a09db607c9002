// Where tenants' items live. Two kinds, one interface:
//   vmpk:  each tenant is a vmpk key with one region; its memory is closed
//          to everyone, and a request opens it for the calling thread only
//          while the handler runs (a synchronous key.with() per request).
//   plain: isolation off; tenants are slices of shared ArrayBuffers, packed
//          one after another as a C allocator would, and a "gate" is a call.
import { open } from '../../dist/index.js';

/**
 * @typedef {object} TenantMemory
 * @property {number} size bytes of memory the tenant may use
 * @property {() => Uint8Array} bytes the tenant's memory (allocated on first use)
 * @property {<T>(fn: () => T) => T} read runs fn with read access
 * @property {<T>(fn: () => T) => T} write runs fn with read and write access
 */

class VmpkTenant {
  constructor(rt, name, size) {
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
    this.view ??= this.heap.take(this.size);
    return this.view;
  }

  read(fn) {
    return fn();
  }

  write(fn) {
    return fn();
  }
}

class PlainHeap {
  constructor() {
    this.buffer = null;
    this.used = 0;
  }

  take(size) {
    if (this.buffer === null || this.used + size > this.buffer.byteLength) {
      this.buffer = new ArrayBuffer(Math.max(CHUNK, size));
      this.used = 0;
    }
    const view = new Uint8Array(this.buffer, this.used, size);
    this.used += size;
    return view;
  }
}

/**
 * @param {{ isolation: 'vmpk' | 'off', backend?: 'auto' | 'pku' | 'mprotect', maxHardwareKeys?: number }} options
 */
export function createMemory(options) {
  if (options.isolation === 'off') {
    const heap = new PlainHeap();
    return {
      isolation: 'off',
      backend: 'none',
      runtime: null,
      tenant: (_name, size) => new PlainTenant(heap, size),
      stats: () => null,
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
    close: () => rt.close(),
  };
}
