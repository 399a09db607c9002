// The cache: tenants, their items, the memcached semantics of each command.
// An item's key and value are stored in its tenant's memory (one buddy
// block: the key bytes, then the value bytes); the JavaScript index keeps
// only numbers: a 52-bit hash of the key, the block, lengths, flags, expiry
// and the CAS value. Every access to a tenant's memory happens inside that
// tenant's gate (memory.read / memory.write), and a command opens only the
// tenant its key names.
import { LRUCache } from 'lru-cache';
import { Buddy, orderFor } from './buddy.mjs';
import { CACHE_COUNTERS, counterRow, counterTotals, piecesLength, writeItem } from './shared.mjs';

const THIRTY_DAYS = 60 * 60 * 24 * 30; // exptimes above this are unix times
const U64 = (1n << 64n) - 1n;

/** FNV-1a and a second mix over key bytes: [index hash (52 bits), tenant hash (32 bits)]. */
export function hashKey(buf, start, end) {
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  for (let i = start; i < end; i++) {
    const c = buf[i];
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  return [(a >>> 0) * 0x100000 + ((b >>> 12) & 0xfffff), (b ^ (b >>> 13)) >>> 0];
}

/** One stored item; `next` chains items whose keys share a hash. */
class Entry {
  constructor(off, order, klen, vlen, flags, exp, cas) {
    this.off = off;
    this.order = order;
    this.klen = klen;
    this.vlen = vlen;
    this.flags = flags;
    this.exp = exp;
    this.cas = cas;
    /** @type {Entry | null} */
    this.next = null;
  }
}

class Tenant {
  constructor(cache, id, name, memory) {
    this.cache = cache;
    this.id = id;
    this.name = name;
    this.memory = memory;
    this.buddy = new Buddy(memory.size, cache.maxBlock);
    // The LRU order of hash buckets. The byte bound is the buddy's: lru-cache
    // only keeps the order, and pop() hands back the least recently used.
    /** @type {LRUCache<number, Entry>} */
    this.index = new LRUCache({ maxSize: Number.MAX_SAFE_INTEGER, sizeCalculation: () => 1 });
    this.items = 0;
    this.bytes = 0; // key + value bytes stored
    this.evictions = 0;
  }

  // A single-threaded server's tenant is only ever used by its one thread.
  lock() {}
  unlock() {}

  has(h) {
    return this.index.peek(h) !== undefined;
  }

  get used() {
    return this.buddy.used;
  }

  /** Empty (flush_all): only the index and the allocator change. */
  clear() {
    this.index.clear();
    this.buddy.reset();
    this.items = 0;
    this.bytes = 0;
  }

  // --- inside a gate on this tenant from here on ---

  /** The live entry for the key, or null; drops it if it has expired. */
  find(h, mem, buf, ks, ke, now, bump) {
    const head = bump ? this.index.get(h) : this.index.peek(h);
    const klen = ke - ks;
    for (let e = head; e; e = e.next) {
      if (e.klen !== klen || !sameBytes(mem, e.off, buf, ks, klen)) continue;
      if (e.exp !== 0 && e.exp <= now) {
        this.unlink(h, e);
        this.cache.counters.expired++;
        return null;
      }
      return e;
    }
    return null;
  }

  unlink(h, entry) {
    const head = this.index.peek(h);
    if (head === entry) {
      if (entry.next) this.index.set(h, entry.next, { noUpdateTTL: true });
      else this.index.delete(h);
    } else {
      let p = head;
      while (p && p.next !== entry) p = p.next;
      if (p) p.next = entry.next;
    }
    this.drop(entry);
  }

  drop(entry) {
    this.buddy.release(entry.off, entry.order);
    this.items--;
    this.bytes -= entry.klen + entry.vlen;
  }

  /** A block for `n` bytes, evicting least recently used buckets until one is free. */
  allocate(n) {
    const order = orderFor(n);
    for (;;) {
      const off = this.buddy.alloc(order);
      if (off >= 0) return [off, order];
      const victim = this.index.pop();
      if (victim === undefined) throw new Error('tenant memory cannot hold the item'); // cannot happen: n <= maxBlock
      for (let e = victim; e; e = e.next) {
        this.drop(e);
        this.evictions++;
        this.cache.counters.evictions++;
      }
    }
  }

  /** Writes key and value (value given as [buffer, start, length] pieces) into a new entry and links it. */
  insert(h, mem, buf, ks, ke, pieces, flags, exp) {
    const klen = ke - ks;
    const vlen = piecesLength(pieces);
    const [off, order] = this.allocate(klen + vlen);
    writeItem(mem, off, buf, ks, ke, pieces);
    const e = new Entry(off, order, klen, vlen, flags, exp, this.cache.nextCas());
    e.next = this.index.get(h) ?? null;
    this.index.set(h, e);
    this.items++;
    this.bytes += klen + vlen;
    this.cache.counters.totalItems++;
    return e;
  }
}

function sameBytes(mem, off, buf, start, n) {
  for (let i = 0; i < n; i++) if (mem[off + i] !== buf[start + i]) return false;
  return true;
}

function printable(bytes) {
  for (const c of bytes) if (c < 0x21 || c > 0x7e || c === 0x22) return false;
  return true;
}

export class CacheError extends Error {}

/** Cache.get's answer when the server has no output memory free for the value now. */
export const WAIT = Symbol('wait');

export class Cache {
  /**
   * @param {object} o
   * @param {ReturnType<import('./memory.mjs').createMemory>} o.memory
   * @param {number} o.tenantBytes memory per tenant (rounded up to whole max blocks)
   * @param {number} o.maxItemSize the largest key + value
   * @param {{ kind: 'prefix', separator: number } | { kind: 'hash', count: number }} o.tenants
   * @param {number} o.maxTenants
   * @param {{ state: any, thread: number, directory: import('./shared.mjs').Directory } | null} [o.shared]
   *   --threads N: this thread's part of the shared tenants, counters, CAS and clock
   */
  constructor(o) {
    this.memory = o.memory;
    this.maxItemSize = o.maxItemSize;
    this.maxBlock = 1 << orderFor(o.maxItemSize);
    this.tenantBytes = Math.ceil(o.tenantBytes / this.maxBlock) * this.maxBlock;
    this.tenantMode = o.tenants;
    this.maxTenants = o.maxTenants;
    /** @type {Map<string | number, Tenant>} */
    this.tenants = new Map();
    this.list = [];
    this.cas = 0;
    this.clockOffset = 0; // test mode moves the clock (debug clock)
    /** @type {Map<string | null, NodeJS.Timeout>} */
    this.flushTimers = new Map();
    this.counters = { evictions: 0, expired: 0, totalItems: 0 };
    this.shared = o.shared ?? null;
    if (this.shared !== null) {
      const { state, thread } = this.shared;
      this.counters = counterRow(state, thread, CACHE_COUNTERS);
      Object.defineProperty(this, 'clockOffset', { get: () => state.clock[0], set: (v) => (state.clock[0] = v) });
    }
  }

  now() {
    return Date.now() + this.clockOffset;
  }

  /** A new CAS value; `cas` keeps the last one this thread handed out (the binary and meta replies read it). */
  nextCas() {
    if (this.shared !== null) return (this.cas = Number(Atomics.add(this.shared.state.cas, 0, 1n)) + 1);
    return ++this.cas;
  }

  /** The cache's counters, of every thread. */
  counterTotals() {
    return this.shared === null ? this.counters : counterTotals(this.shared.state, CACHE_COUNTERS);
  }

  tenantCount() {
    return this.shared === null ? this.list.length : this.shared.directory.count();
  }

  allTenants() {
    return this.shared === null ? this.list : this.shared.directory.all();
  }

  /** Milliseconds since the epoch when an item stored now with `exptime` expires; 0: never. */
  expiry(exptime) {
    if (exptime === 0) return 0;
    if (exptime < 0) return -1;
    if (exptime > THIRTY_DAYS) return exptime * 1000 || -1;
    return this.now() + exptime * 1000;
  }

  /**
   * The tenant a key belongs to, created on first use; with create false,
   * null when no store has named it yet (a lookup creates no tenant).
   */
  tenantOf(buf, ks, ke, th, create = true, scope = null) {
    let id;
    let label;
    if (scope !== null) {
      // A connection bound to a tenant by authentication: the key is its own.
      id = scope;
      label = printable(Buffer.from(scope, 'latin1')) && scope.length <= 48 ? scope : null;
    } else if (this.tenantMode.kind === 'hash') {
      id = th % this.tenantMode.count;
      label = String(id);
    } else {
      let sep = ks;
      while (sep < ke && buf[sep] !== this.tenantMode.separator) sep++;
      const prefix = buf.subarray(ks, sep < ke ? sep : ks); // no separator: the unnamed tenant
      id = prefix.toString('latin1');
      label = prefix.length === 0 ? '(none)' : printable(prefix) && prefix.length <= 48 ? prefix.toString('latin1') : null;
    }
    if (this.shared !== null) {
      const t = this.shared.directory.get(id);
      if (t !== undefined) return t;
      if (!create) return null;
      const made = this.shared.directory.create(id, label);
      if (made === null) throw new CacheError('SERVER_ERROR out of tenants');
      return made;
    }
    let t = this.tenants.get(id);
    if (t !== undefined) return t;
    if (!create) return null;
    if (this.list.length >= this.maxTenants) throw new CacheError('SERVER_ERROR out of tenants');
    const n = this.list.length;
    const memory = this.memory.tenant(`tenant ${label ?? `#${n}`}`, this.tenantBytes);
    t = new Tenant(this, n, id, memory);
    this.tenants.set(id, t);
    this.list.push(t);
    return t;
  }

  /**
   * get/gets of one key. Inside the gate, `take(vlen)` hands out output
   * chunks for the value (or null when the server's output memory is used
   * up: the result is then WAIT and nothing was copied); the value is copied
   * into them, so nothing outside the gate keeps a view of tenant memory.
   * @returns {null | typeof WAIT | { flags: number, cas: number, vlen: number, chunks: Buffer[] }}
   */
  get(buf, ks, ke, take, scope = null) {
    const [h, th] = hashKey(buf, ks, ke);
    const t = this.tenantOf(buf, ks, ke, th, false, scope);
    if (t === null) return null;
    t.lock();
    try {
      if (!t.has(h)) return null; // no item with this hash: no memory to read
      return this.getLocked(t, h, buf, ks, ke, take);
    } finally {
      t.unlock();
    }
  }

  getLocked(t, h, buf, ks, ke, take) {
    const now = this.now();
    return t.memory.read(() => {
      const mem = t.memory.bytes();
      const e = t.find(h, mem, buf, ks, ke, now, true);
      if (e === null) return null;
      const chunks = take(e.vlen);
      if (chunks === null) return WAIT;
      let at = e.off + e.klen;
      let left = e.vlen;
      for (const c of chunks) {
        const n = Math.min(left, c.length);
        c.set(mem.subarray(at, at + n));
        at += n;
        left -= n;
      }
      return { flags: e.flags, cas: e.cas, exp: e.exp, vlen: e.vlen, chunks };
    });
  }

  /**
   * set, add, replace, append, prepend, cas. The value is the [buffer,
   * start, length] pieces in order.
   * @returns {'STORED' | 'NOT_STORED' | 'EXISTS' | 'NOT_FOUND'}
   */
  store(cmd, buf, ks, ke, flags, exptime, pieces, casUnique, scope = null) {
    let dlen = 0;
    for (const [, , n] of pieces) dlen += n;
    const [h, th] = hashKey(buf, ks, ke);
    const t = this.tenantOf(buf, ks, ke, th, true, scope);
    const now = this.now();
    const exp = this.expiry(exptime);
    t.lock();
    try {
      return this.storeLocked(t, h, cmd, buf, ks, ke, flags, now, exp, pieces, dlen, casUnique);
    } finally {
      t.unlock();
    }
  }

  storeLocked(t, h, cmd, buf, ks, ke, flags, now, exp, pieces, dlen, casUnique) {
    return t.memory.write(() => {
      const mem = t.memory.bytes();
      const old = t.find(h, mem, buf, ks, ke, now, false);
      switch (cmd) {
        case 'add':
          if (old) return 'NOT_STORED';
          break;
        case 'replace':
          if (!old) return 'NOT_STORED';
          break;
        case 'cas':
          if (!old) return 'NOT_FOUND';
          if (old.cas !== casUnique) return 'EXISTS';
          break;
        case 'append':
        case 'prepend': {
          if (!old) return 'NOT_STORED';
          if (old.klen + old.vlen + dlen > this.maxItemSize) throw new CacheError('SERVER_ERROR object too large for cache');
          // Copy the old value out first: making room may evict its block.
          const prev = Buffer.from(mem.subarray(old.off + old.klen, old.off + old.klen + old.vlen));
          const { flags: oldFlags, exp: oldExp } = old;
          t.unlink(h, old);
          const before = [prev, 0, prev.length];
          t.insert(h, mem, buf, ks, ke, cmd === 'append' ? [before, ...pieces] : [...pieces, before], oldFlags, oldExp);
          return 'STORED';
        }
      }
      if (old) t.unlink(h, old);
      if (exp !== -1 && (exp === 0 || exp > now)) t.insert(h, mem, buf, ks, ke, pieces, flags, exp);
      return 'STORED';
    });
  }

  /** @returns {'DELETED' | 'NOT_FOUND'} */
  delete(buf, ks, ke, scope = null) {
    const [h, th] = hashKey(buf, ks, ke);
    const t = this.tenantOf(buf, ks, ke, th, false, scope);
    if (t === null) return 'NOT_FOUND';
    const now = this.now();
    t.lock();
    try {
      if (!t.has(h)) return 'NOT_FOUND';
      return t.memory.write(() => {
        const e = t.find(h, t.memory.bytes(), buf, ks, ke, now, false);
        if (e === null) return 'NOT_FOUND';
        t.unlink(h, e);
        return 'DELETED';
      });
    } finally {
      t.unlock();
    }
  }

  /** @returns {string | 'NOT_FOUND' | null} the new value, NOT_FOUND, or null for a non-numeric value */
  incr(buf, ks, ke, delta, up, scope = null) {
    const [h, th] = hashKey(buf, ks, ke);
    const t = this.tenantOf(buf, ks, ke, th, false, scope);
    if (t === null) return 'NOT_FOUND';
    const now = this.now();
    t.lock();
    try {
      if (!t.has(h)) return 'NOT_FOUND';
      return this.incrLocked(t, h, buf, ks, ke, delta, up, now);
    } finally {
      t.unlock();
    }
  }

  incrLocked(t, h, buf, ks, ke, delta, up, now) {
    return t.memory.write(() => {
      const mem = t.memory.bytes();
      const e = t.find(h, mem, buf, ks, ke, now, true);
      if (e === null) return 'NOT_FOUND';
      const text = Buffer.from(mem.subarray(e.off + e.klen, e.off + e.klen + e.vlen)).toString('latin1');
      // As memcached's safe_strtoull: leading white space and a '+' are
      // skipped, the digits are read, and what follows them must be white
      // space or nothing ("42 7" is 42; a shorter result is padded, below).
      const m = /^[ \t\n\v\f\r]*\+?([0-9]+)(?:[ \t\n\v\f\r]|$)/.exec(text);
      if (m === null || BigInt(m[1]) > U64) return null;
      let n = BigInt(m[1]);
      n = up ? (n + delta) & U64 : n > delta ? n - delta : 0n;
      // As memcached: a result no longer than the old value keeps the item's
      // length, padded with spaces; a longer one makes the item longer.
      let str = n.toString();
      if (str.length < e.vlen) str = str.padEnd(e.vlen, ' ');
      const out = Buffer.from(str, 'latin1');
      const { flags, exp } = e;
      t.unlink(h, e);
      t.insert(h, mem, buf, ks, ke, [[out, 0, out.length]], flags, exp);
      return n.toString();
    });
  }

  /** @returns {'TOUCHED' | 'NOT_FOUND'} */
  touch(buf, ks, ke, exptime, scope = null) {
    const [h, th] = hashKey(buf, ks, ke);
    const t = this.tenantOf(buf, ks, ke, th, false, scope);
    if (t === null) return 'NOT_FOUND';
    const now = this.now();
    const exp = this.expiry(exptime);
    t.lock();
    try {
      if (!t.has(h)) return 'NOT_FOUND';
      return t.memory.read(() => {
        const e = t.find(h, t.memory.bytes(), buf, ks, ke, now, true);
        if (e === null) return 'NOT_FOUND';
        if (exp === -1 || (exp !== 0 && exp <= now)) t.unlink(h, e);
        else e.exp = exp;
        return 'TOUCHED';
      });
    } finally {
      t.unlock();
    }
  }

  /**
   * flush_all: every item of every tenant (or, for a connection bound to
   * `scope`, of that tenant only) is gone now, or after `delay` seconds. A
   * later flush_all of the same scope replaces a pending one.
   */
  flushAll(delay, scope = null) {
    const pending = this.flushTimers.get(scope);
    if (pending !== undefined) clearTimeout(pending);
    this.flushTimers.delete(scope);
    if (delay > 0) {
      const timer = setTimeout(() => {
        this.flushTimers.delete(scope);
        this.flushAll(0, scope);
      }, delay * 1000);
      timer.unref();
      this.flushTimers.set(scope, timer);
      return;
    }
    // Only the index and the allocator change: no tenant memory is touched.
    const shared = this.shared !== null;
    for (const t of scope === null ? this.allTenants() : [shared ? this.shared.directory.get(scope) : this.tenants.get(scope)]) {
      if (t === undefined) continue;
      t.lock();
      t.clear();
      t.unlock();
    }
  }

  totals() {
    let items = 0;
    let bytes = 0;
    for (const t of this.allTenants()) {
      items += t.items;
      bytes += t.bytes;
    }
    return { items, bytes };
  }

  /** The tenant's figures (debug tenant), or null if no key has named it. */
  tenantStats(buf, ks, ke) {
    const [, th] = hashKey(buf, ks, ke);
    const t = this.tenantOf(buf, ks, ke, th);
    t.lock();
    try {
      return { id: t.id, items: t.items, bytes: t.bytes, evictions: t.evictions, used: t.used, limit: t.memory.size };
    } finally {
      t.unlock();
    }
  }

  close() {
    for (const timer of this.flushTimers.values()) clearTimeout(timer);
    if (this.shared === null) this.memory.close(); // threads: the main thread owns the memory
  }
}
