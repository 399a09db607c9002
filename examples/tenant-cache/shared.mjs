// --threads N: what the worker threads share. Worker threads share no
// JavaScript objects, so everything more than one thread reads or changes
// lives in SharedArrayBuffers:
//   - per tenant, its index (hash chains, the LRU list, each item's numbers)
//     and its buddy allocator's free lists, as typed arrays, and a lock word
//     (SharedTenant below). The lock is taken around each command before the
//     tenant's gate opens: it cannot live in the tenant's vmpk memory, which
//     a thread may only touch once it holds the lock and has opened the gate;
//   - the tenant directory's size, the CAS counter, the test clock, and one
//     row of counters per thread (stats sums the rows).
// The items themselves stay in the tenant's vmpk memory, shared by
// key.handle() in the main thread and adopt() in each worker.
//
// Tenants are created by the main thread only, on a worker's request (the
// worker blocks until it is done): one thread creates, so two workers naming
// a new tenant at once make one tenant, and every vmpk key is owned by the
// thread that outlives the workers. The main thread posts each new tenant to
// every worker's inbox before it bumps the shared count, so a worker that
// sees the count grow can take the tenant from its inbox at once
// (receiveMessageOnPort, synchronously: handlers never await).
import { receiveMessageOnPort } from 'node:worker_threads';
import { MIN_ORDER, orderFor } from './buddy.mjs';

// --- the per-tenant lock --------------------------------------------------

const SPINS = 64;

/** Locks word 0 of `w`: 0 free, 1 held, 2 held with waiters (a futex mutex). */
export function lock(w) {
  if (Atomics.compareExchange(w, 0, 0, 1) === 0) return;
  for (let i = 0; i < SPINS; i++) if (Atomics.load(w, 0) === 0 && Atomics.compareExchange(w, 0, 0, 1) === 0) return;
  while (Atomics.exchange(w, 0, 2) !== 0) Atomics.wait(w, 0, 2);
}

export function unlock(w) {
  if (Atomics.sub(w, 0, 1) !== 1) {
    Atomics.store(w, 0, 0);
    Atomics.notify(w, 0, 1);
  }
}

// --- a tenant's index and allocator in one SharedArrayBuffer --------------

// Slots: block index + 1 (0 is "none"), so a fresh (zeroed) buffer is an
// empty index and untouched pages cost no memory. An item's slot is its
// block's: one item per block.
const H_LOCK = 0;
const H_ITEMS = 1;
const H_LRU_HEAD = 2; // most recently used
const H_LRU_TAIL = 3;
const F_BYTES = 0;
const F_USED = 1;
const F_EVICTIONS = 2;

function layout(size, maxOrder) {
  const nb = size >> MIN_ORDER;
  let nbk = 1;
  while (nbk < nb) nbk <<= 1;
  const parts = [
    ['head', Int32Array, 8],
    ['fhead', Float64Array, 4],
    ['ehash', Float64Array, nb + 1],
    ['ecas', Float64Array, nb + 1],
    ['eexp', Float64Array, nb + 1],
    ['eklen', Int32Array, nb + 1],
    ['evlen', Int32Array, nb + 1],
    ['eflags', Uint32Array, nb + 1],
    ['hnext', Int32Array, nb + 1],
    ['lprev', Int32Array, nb + 1],
    ['lnext', Int32Array, nb + 1],
    ['bucket', Int32Array, nbk],
    ['freeHead', Int32Array, maxOrder + 1],
    ['freeTail', Int32Array, maxOrder + 1],
    ['fnext', Int32Array, nb + 1],
    ['fprev', Int32Array, nb + 1],
    ['eorder', Uint8Array, nb + 1],
    ['forder', Uint8Array, nb + 1], // order + 1 where a free block starts
  ];
  let at = 0;
  const offsets = [];
  for (const [name, T, n] of parts) {
    at = Math.ceil(at / 8) * 8;
    offsets.push([name, T, at, n]);
    at += n * T.BYTES_PER_ELEMENT;
  }
  return { bytes: at, offsets, nbk };
}

/** A buffer for the index of a tenant of `size` bytes (the main thread makes it). */
export function tenantIndexBuffer(size, maxBlock) {
  const maxOrder = orderFor(maxBlock);
  const sab = new SharedArrayBuffer(layout(size, maxOrder).bytes);
  new SharedTenant(null, -1, null, { size }, sab, maxBlock).init(); // zeroed already: only the largest blocks' free-list entries are written
  return sab;
}

/** A stored item, as the cache's commands see it: the numbers of one slot. */
class SharedEntry {
  constructor(t, s) {
    this.t = t;
    this.s = s;
  }
  get off() {
    return (this.s - 1) << MIN_ORDER;
  }
  get order() {
    return this.t.eorder[this.s];
  }
  get klen() {
    return this.t.eklen[this.s];
  }
  get vlen() {
    return this.t.evlen[this.s];
  }
  get flags() {
    return this.t.eflags[this.s];
  }
  get cas() {
    return this.t.ecas[this.s];
  }
  get exp() {
    return this.t.eexp[this.s];
  }
  set exp(v) {
    this.t.eexp[this.s] = v;
  }
}

function sameBytes(mem, off, buf, start, n) {
  for (let i = 0; i < n; i++) if (mem[off + i] !== buf[start + i]) return false;
  return true;
}

/**
 * A tenant of a threaded server: the same methods as store.mjs's Tenant,
 * over the shared buffer. Every method but lock() runs with the lock held.
 * The LRU order is per item (store.mjs's is per 52-bit hash; they differ
 * only for keys whose hashes collide).
 */
export class SharedTenant {
  constructor(cache, id, name, memory, sab, maxBlock) {
    this.cache = cache;
    this.id = id;
    this.name = name;
    this.memory = memory;
    this.maxOrder = orderFor(maxBlock);
    const { offsets, nbk } = layout(memory.size, this.maxOrder);
    for (const [field, T, at, n] of offsets) this[field] = new T(sab, at, n);
    this.nbk = nbk;
    this.buddy = this; // tenantStats reads buddy.used
  }

  lock() {
    lock(this.head);
  }
  unlock() {
    unlock(this.head);
  }

  get items() {
    return this.head[H_ITEMS];
  }
  get bytes() {
    return this.fhead[F_BYTES];
  }
  get used() {
    return this.fhead[F_USED];
  }
  get evictions() {
    return this.fhead[F_EVICTIONS];
  }

  /**
   * Empty (flush_all): only numbers change, no tenant memory is touched.
   * Only the index's non-zero words are zeroed (the buckets of live items,
   * the starts of free blocks), not whole tables: filling them would touch
   * every page of every tenant's index, so one flush_all after naming many
   * tenants would make about 300 KiB resident per 4 MiB tenant.
   */
  clear() {
    for (let s = this.head[H_LRU_HEAD]; s; s = this.lnext[s]) this.bucket[this.bucketOf(this.ehash[s])] = 0;
    for (let o = 0; o <= this.maxOrder; o++) for (let s = this.freeHead[o]; s; s = this.fnext[s]) this.forder[s] = 0;
    this.freeHead.fill(0);
    this.freeTail.fill(0);
    this.head[H_ITEMS] = 0;
    this.head[H_LRU_HEAD] = 0;
    this.head[H_LRU_TAIL] = 0;
    this.fhead[F_BYTES] = 0;
    this.fhead[F_USED] = 0;
    this.init();
  }

  /** Every block of the largest size free (the index is empty). */
  init() {
    for (let off = 0; off < this.memory.size; off += 1 << this.maxOrder) this.freeAdd(this.maxOrder, (off >> MIN_ORDER) + 1);
  }

  // --- the buddy allocator: a FIFO list of free blocks per order ---

  freeAdd(o, s) {
    const tail = this.freeTail[o];
    this.fprev[s] = tail;
    this.fnext[s] = 0;
    if (tail) this.fnext[tail] = s;
    else this.freeHead[o] = s;
    this.freeTail[o] = s;
    this.forder[s] = o + 1;
  }

  freeRemove(o, s) {
    const p = this.fprev[s];
    const n = this.fnext[s];
    if (p) this.fnext[p] = n;
    else this.freeHead[o] = n;
    if (n) this.fprev[n] = p;
    else this.freeTail[o] = p;
    this.forder[s] = 0;
  }

  alloc(order) {
    let o = order;
    while (o <= this.maxOrder && this.freeHead[o] === 0) o++;
    if (o > this.maxOrder) return -1;
    const s = this.freeHead[o];
    this.freeRemove(o, s);
    while (o > order) {
      o--;
      this.freeAdd(o, s + (1 << (o - MIN_ORDER))); // the upper half stays free
    }
    this.fhead[F_USED] += 1 << order;
    return (s - 1) << MIN_ORDER;
  }

  release(off, order) {
    this.fhead[F_USED] -= 1 << order;
    while (order < this.maxOrder) {
      const bs = ((off ^ (1 << order)) >> MIN_ORDER) + 1;
      if (this.forder[bs] !== order + 1) break;
      this.freeRemove(order, bs);
      off = Math.min(off, (bs - 1) << MIN_ORDER);
      order++;
    }
    this.freeAdd(order, (off >> MIN_ORDER) + 1);
  }

  // --- the index ---

  bucketOf(h) {
    return h % this.nbk;
  }

  has(h) {
    for (let s = this.bucket[this.bucketOf(h)]; s; s = this.hnext[s]) if (this.ehash[s] === h) return true;
    return false;
  }

  lruRemove(s) {
    const p = this.lprev[s];
    const n = this.lnext[s];
    if (p) this.lnext[p] = n;
    else this.head[H_LRU_HEAD] = n;
    if (n) this.lprev[n] = p;
    else this.head[H_LRU_TAIL] = p;
  }

  lruFront(s) {
    const first = this.head[H_LRU_HEAD];
    this.lprev[s] = 0;
    this.lnext[s] = first;
    if (first) this.lprev[first] = s;
    else this.head[H_LRU_TAIL] = s;
    this.head[H_LRU_HEAD] = s;
  }

  find(h, mem, buf, ks, ke, now, bump) {
    const klen = ke - ks;
    for (let s = this.bucket[this.bucketOf(h)]; s; s = this.hnext[s]) {
      if (this.ehash[s] !== h || this.eklen[s] !== klen || !sameBytes(mem, (s - 1) << MIN_ORDER, buf, ks, klen)) continue;
      const e = new SharedEntry(this, s);
      const exp = this.eexp[s];
      if (exp !== 0 && exp <= now) {
        this.unlink(h, e);
        this.cache.counters.expired++;
        return null;
      }
      if (bump) {
        this.lruRemove(s);
        this.lruFront(s);
      }
      return e;
    }
    return null;
  }

  /** Takes slot s out of its hash chain and the LRU list and frees its block. */
  remove(s) {
    const b = this.bucketOf(this.ehash[s]);
    if (this.bucket[b] === s) this.bucket[b] = this.hnext[s];
    else {
      let p = this.bucket[b];
      while (p && this.hnext[p] !== s) p = this.hnext[p];
      if (p) this.hnext[p] = this.hnext[s];
    }
    this.lruRemove(s);
    this.release((s - 1) << MIN_ORDER, this.eorder[s]);
    this.head[H_ITEMS]--;
    this.fhead[F_BYTES] -= this.eklen[s] + this.evlen[s];
  }

  unlink(_h, e) {
    this.remove(e.s);
  }

  allocate(n) {
    const order = orderFor(n);
    for (;;) {
      const off = this.alloc(order);
      if (off >= 0) return [off, order];
      const victim = this.head[H_LRU_TAIL];
      if (victim === 0) throw new Error('tenant memory cannot hold the item'); // cannot happen: n <= maxBlock
      this.remove(victim);
      this.fhead[F_EVICTIONS]++;
      this.cache.counters.evictions++;
    }
  }

  insert(h, mem, buf, ks, ke, pieces, flags, exp) {
    const klen = ke - ks;
    const vlen = piecesLength(pieces);
    const [off, order] = this.allocate(klen + vlen);
    writeItem(mem, off, buf, ks, ke, pieces);
    const s = (off >> MIN_ORDER) + 1;
    this.ehash[s] = h;
    this.eorder[s] = order;
    this.eklen[s] = klen;
    this.evlen[s] = vlen;
    this.eflags[s] = flags;
    this.eexp[s] = exp;
    this.ecas[s] = this.cache.nextCas();
    const b = this.bucketOf(h);
    this.hnext[s] = this.bucket[b];
    this.bucket[b] = s;
    this.lruFront(s);
    this.head[H_ITEMS]++;
    this.fhead[F_BYTES] += klen + vlen;
    this.cache.counters.totalItems++;
    return new SharedEntry(this, s);
  }
}

/** The bytes of a value given as [buffer, start, length] pieces. */
export function piecesLength(pieces) {
  let n = 0;
  for (const [, , len] of pieces) n += len;
  return n;
}

/** An item's bytes in tenant memory, for both indexes: the key, then the value's pieces. */
export function writeItem(mem, off, buf, ks, ke, pieces) {
  mem.set(buf.subarray(ks, ke), off);
  let at = off + (ke - ks);
  for (const [p, ps, n] of pieces) {
    if (n) mem.set(p.subarray(ps, ps + n), at);
    at += n;
  }
}

// --- what every thread shares from the start --------------------------------

const C_TENANTS = 0; // tenants created so far
const C_HELD = 1; // test mode: the thread (1-based) sitting in a gate (debug hold)
const C_RELEASE = 2; // test mode: debug release
const C_REPLY = 8; // + thread: the main thread's answer to a creation request

export const CACHE_COUNTERS = ['evictions', 'expired', 'totalItems'];

/** The shared state of a threaded server, made by the main thread. */
export function sharedState(threads, counterNames) {
  return {
    threads,
    counterNames,
    control: new Int32Array(new SharedArrayBuffer(4 * (C_REPLY + threads))),
    cas: new BigInt64Array(new SharedArrayBuffer(8)),
    clock: new Float64Array(new SharedArrayBuffer(8)),
    counters: new Float64Array(new SharedArrayBuffer(8 * threads * counterNames.length)),
  };
}

/** One thread's row of counters: an object whose fields are that row. */
export function counterRow(state, thread, names) {
  const row = {};
  const base = thread * state.counterNames.length;
  for (const name of names) {
    const i = base + state.counterNames.indexOf(name);
    Object.defineProperty(row, name, { enumerable: true, get: () => state.counters[i], set: (v) => (state.counters[i] = v) });
  }
  return row;
}

/** Every thread's rows summed. */
export function counterTotals(state, names) {
  const out = {};
  const k = state.counterNames.length;
  for (const name of names) {
    const j = state.counterNames.indexOf(name);
    let sum = 0;
    for (let t = 0; t < state.threads; t++) sum += state.counters[t * k + j];
    out[name] = sum;
  }
  return out;
}

export function counterOfThread(state, thread, name) {
  return state.counters[thread * state.counterNames.length + state.counterNames.indexOf(name)];
}

export function resetCounters(state, keep) {
  const k = state.counterNames.length;
  for (let t = 0; t < state.threads; t++)
    for (let j = 0; j < k; j++) if (!keep.includes(state.counterNames[j])) state.counters[t * k + j] = 0;
}

export const held = (state) => Atomics.load(state.control, C_HELD);

/**
 * Test mode (debug hold), called inside a tenant's gate: says this thread
 * holds it, then waits there until debug release or `seconds` pass.
 * @returns {'RELEASED' | 'TIMEOUT'}
 */
export function holdHere(state, thread, seconds) {
  Atomics.store(state.control, C_HELD, thread + 1);
  const r = Atomics.wait(state.control, C_RELEASE, 0, seconds * 1000);
  Atomics.store(state.control, C_HELD, 0);
  Atomics.store(state.control, C_RELEASE, 0);
  return r === 'timed-out' ? 'TIMEOUT' : 'RELEASED';
}

export function release(state) {
  Atomics.store(state.control, C_RELEASE, 1);
  Atomics.notify(state.control, C_RELEASE);
}

/**
 * The main thread's side: creates tenants when workers ask, posts each to
 * every worker's inbox. `make(n, id, label)` returns the tenant's shareable
 * description ({ id, label, memory, sab }).
 */
export class Registry {
  constructor(state, maxTenants, make) {
    this.state = state;
    this.maxTenants = maxTenants;
    this.make = make;
    this.ids = new Map();
    /** @type {MessagePort[]} */
    this.inboxes = [];
  }

  /** A worker's request: ({ thread, id, label }). */
  request({ thread, id, label }) {
    let answer = 1;
    if (!this.ids.has(id)) {
      const n = this.ids.size;
      if (n >= this.maxTenants) answer = 2;
      else {
        const t = this.make(n, id, label);
        this.ids.set(id, n);
        for (const inbox of this.inboxes) inbox.postMessage(t);
        Atomics.store(this.state.control, C_TENANTS, n + 1); // after the posts: a worker seeing n + 1 finds them
      }
    }
    Atomics.store(this.state.control, C_REPLY + thread, answer);
    Atomics.notify(this.state.control, C_REPLY + thread);
  }
}

const NAP = new Int32Array(new SharedArrayBuffer(4)); // a 1 ms sleep: Atomics.wait on a word nobody changes

/** A worker's view of the tenants: local objects for the shared ones, made on first sight. */
export class Directory {
  /**
   * @param {ReturnType<typeof sharedState>} state
   * @param {number} thread
   * @param {MessagePort} toMain creation requests
   * @param {MessagePort} inbox new tenants, from the main thread
   * @param {(desc: any, n: number) => any} build a local tenant from a description
   */
  constructor(state, thread, toMain, inbox, build) {
    this.state = state;
    this.thread = thread;
    this.toMain = toMain;
    this.inbox = inbox;
    this.build = build;
    this.map = new Map();
    this.list = [];
  }

  /** Takes every tenant the main thread has created and this thread has not seen. */
  sync() {
    const want = Atomics.load(this.state.control, C_TENANTS);
    let idle = 0;
    while (this.list.length < want) {
      const m = receiveMessageOnPort(this.inbox);
      if (m === undefined) {
        // Posted before the count was bumped; should be here already. Wait a little, a bounded number of times.
        if (++idle > 5000) throw new Error(`tenant ${this.list.length} was announced but never arrived`);
        Atomics.wait(NAP, 0, 0, 1);
        continue;
      }
      const t = this.build(m.message, this.list.length);
      this.map.set(m.message.id, t);
      this.list.push(t);
    }
  }

  get(id) {
    let t = this.map.get(id);
    if (t === undefined && this.list.length < Atomics.load(this.state.control, C_TENANTS)) {
      this.sync();
      t = this.map.get(id);
    }
    return t;
  }

  /** The tenant, created by the main thread if no thread has named it yet; null when out of tenants. */
  create(id, label) {
    const slot = C_REPLY + this.thread;
    Atomics.store(this.state.control, slot, 0);
    this.toMain.postMessage({ thread: this.thread, id, label });
    // The main thread serves no connections; it answers at once.
    if (Atomics.wait(this.state.control, slot, 0, 30_000) === 'timed-out') throw new Error('the main thread did not answer a tenant creation');
    const answer = Atomics.load(this.state.control, slot);
    this.sync();
    return answer === 2 && !this.map.has(id) ? null : this.map.get(id);
  }

  count() {
    return Atomics.load(this.state.control, C_TENANTS);
  }

  all() {
    this.sync();
    return this.list;
  }
}
