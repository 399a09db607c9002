// examples/tenant-cache/shared.mjs against store.mjs: the threaded server's
// tenant (index, LRU list and buddy free lists in a SharedArrayBuffer) must
// answer every command as the one-thread tenant does. The same seeded random
// commands (all the storage commands, get, delete, incr/decr, touch, expiry
// by a moving clock, values of 0 to 3,000 bytes in 16 KiB tenants: evictions
// and fragmented free lists) go to a Cache of each kind, in this thread, and
// every answer and every tenant's figures (items, bytes, evictions, bytes in
// use) must be equal. Isolation off: this is about the index, not the gates.
import { describe, expect, it } from 'vitest';

// (Not helpers/vmpk.js's prng: that module loads src/, and memory.mjs loads
// dist/; koffi refuses the second copy's type names in one process.)
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

const here = (f: string) => new URL(`../examples/tenant-cache/${f}`, import.meta.url).href;
type Any = any; // the examples are JavaScript without declarations

async function caches(): Promise<[Any, Any]> {
  const { Cache } = await import(here('store.mjs'));
  const { createMemory } = await import(here('memory.mjs'));
  const shared = await import(here('shared.mjs'));
  const { orderFor } = await import(here('buddy.mjs'));
  const o = { tenantBytes: 16384, maxItemSize: 4096, tenants: { kind: 'prefix', separator: 0x3a }, maxTenants: 8 };
  const one = new Cache({ ...o, memory: createMemory({ isolation: 'off' }) });
  // A one-thread stand-in for the workers' Directory: the tenants are made here.
  const memory = createMemory({ isolation: 'off', shared: true });
  const state = shared.sharedState(1, shared.CACHE_COUNTERS);
  const maxBlock = 1 << orderFor(o.maxItemSize);
  const map = new Map<unknown, Any>();
  const list: Any[] = [];
  let cache: Any = null;
  const directory = {
    get: (id: unknown) => map.get(id),
    create(id: unknown) {
      if (list.length >= o.maxTenants) return null;
      const t = new shared.SharedTenant(cache, list.length, id, memory.tenant(`tenant ${String(id)}`, 16384), shared.tenantIndexBuffer(16384, maxBlock), maxBlock);
      map.set(id, t);
      list.push(t);
      return t;
    },
    count: () => list.length,
    all: () => list,
  };
  cache = new Cache({ ...o, memory, shared: { state, thread: 0, directory } });
  return [one, cache];
}

const take = (n: number) => [Buffer.alloc(n)];

function run(cache: Any, rand: () => number, steps: number): unknown[] {
  const out: unknown[] = [];
  const keys = Array.from({ length: 40 }, (_, i) => Buffer.from(`${['a', 'b', 'c'][i % 3]}:key-${i}`));
  const pick = () => keys[Math.floor(rand() * keys.length)];
  for (let i = 0; i < steps; i++) {
    const k = pick();
    const r = rand();
    const len = rand() < 0.7 ? Math.floor(rand() * 200) : Math.floor(rand() * 3000);
    const v = Buffer.alloc(len, 0x61 + (i % 26));
    const exptime = rand() < 0.1 ? 1 + Math.floor(rand() * 5) : 0;
    let res: unknown;
    try {
      if (r < 0.3) res = cache.store('set', k, 0, k.length, i, exptime, [[v, 0, v.length]], 0);
      else if (r < 0.35) res = cache.store('add', k, 0, k.length, i, exptime, [[v, 0, v.length]], 0);
      else if (r < 0.4) res = cache.store('replace', k, 0, k.length, i, 0, [[v, 0, v.length]], 0);
      else if (r < 0.45) res = cache.store(rand() < 0.5 ? 'append' : 'prepend', k, 0, k.length, 0, 0, [[v, 0, Math.min(v.length, 300)]], 0);
      else if (r < 0.5) res = cache.store('cas', k, 0, k.length, 1, 0, [[v, 0, v.length]], Math.floor(rand() * i));
      else if (r < 0.75) {
        const hit = cache.get(k, 0, k.length, take);
        res = hit && { flags: hit.flags, cas: hit.cas, exp: hit.exp, value: Buffer.concat(hit.chunks).toString('latin1') };
      } else if (r < 0.82) res = cache.delete(k, 0, k.length);
      else if (r < 0.88) {
        const n = Buffer.from(String(Math.floor(rand() * 1000)));
        if (rand() < 0.5) cache.store('set', k, 0, k.length, 0, 0, [[n, 0, n.length]], 0);
        res = cache.incr(k, 0, k.length, BigInt(Math.floor(rand() * 100)), rand() < 0.5);
      } else if (r < 0.93) res = cache.touch(k, 0, k.length, rand() < 0.2 ? -1 : Math.floor(rand() * 4));
      else if (r < 0.995) {
        cache.clockOffset += 1000; // one second later: items with short exptimes expire
        res = 'tick';
      } else {
        cache.flushAll(0);
        res = 'flushed';
      }
    } catch (err) {
      res = `threw ${(err as Error).message}`;
    }
    const t = cache.tenantOf(k, 0, k.length, 0, false);
    out.push([i, res, t && [t.items, t.bytes, t.evictions, t.used]]);
  }
  return out;
}

describe('tenant-cache: the shared index (--threads) answers as the one-thread index', () => {
  it.each([[1], [2], [3], [4]])('seed %i: 3,000 random commands, the same answers and figures', async (seed) => {
    const [one, threaded] = await caches();
    // Both clocks start together, so expiry times agree.
    const start = Date.now();
    one.now = threaded.now = function (this: Any) {
      return start + this.clockOffset;
    };
    const a = run(one, prng(seed), 3000);
    const b = run(threaded, prng(seed), 3000);
    expect(b).toEqual(a);
    // The run did what it is for: evictions happened, items expired.
    const last = a.filter((x) => (x as unknown[])[2] !== null).map((x) => (x as [number, unknown, number[]])[2]);
    expect(Math.max(...last.map((f) => f[2]))).toBeGreaterThan(0);
    expect(one.counters.expired).toBeGreaterThan(0);
    expect(threaded.counterTotals()).toEqual({ ...one.counters });
  });
});
