// Exact counts of the work behind gates, from stats() deltas.
//
// pku: vkeys are cached on hardware keys, the most used kept (native/src/cache.h).
// A hit (resident vkey) makes no
// syscall; a miss tags the vkey's window with one pkey_mprotect, plus one more
// to send an evicted vkey's window back to pkey 0 (vmpk.h: "an eviction costs
// two syscalls whatever the number of regions").
// mprotect: a gate costs a syscall only when it changes the pages' protection;
// on a key whose access is 'none', opening it is a miss (one mprotect) and
// closing it one more mprotect.
import { describe, expect, it } from 'vitest';
import type { Key, Runtime, Stats } from '../src/index.js';
import { onPku, openRuntime } from './helpers/vmpk.js';

function delta(rt: Runtime, fn: () => void): Stats {
  const before = rt.stats();
  fn();
  const after = rt.stats();
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - before[k as keyof Stats]])) as unknown as Stats;
}

/**
 * The reference model of native/src/cache.h: every gate is a use of its key,
 * remembered while the key is not resident too; a miss takes a free hardware
 * key, else evicts the resident key with the fewest uses (the lowest
 * hardware key among equals). A few keys and uses: the sketch counts them
 * exactly and never halves (test/c/test_cache.c).
 */
function cacheModel(capacity: number) {
  const uses = new Map<string, number>();
  const hw: string[] = []; // hw[i]: the key hardware key i serves
  return (name: string): { hit: boolean; evicted: string | null } => {
    uses.set(name, (uses.get(name) ?? 0) + 1);
    if (hw.includes(name)) return { hit: true, evicted: null };
    if (hw.length < capacity) {
      hw.push(name);
      return { hit: false, evicted: null };
    }
    let victim = 0;
    for (let i = 1; i < hw.length; i++) if (uses.get(hw[i]!)! < uses.get(hw[victim]!)!) victim = i;
    const evicted = hw[victim]!;
    hw[victim] = name;
    return { hit: false, evicted };
  };
}

describe('exact counts', () => {
  describe.runIf(onPku)('pku backend, maxHardwareKeys: 2', () => {
    it('a scripted pattern hits, misses and evicts exactly as the model of a cache of two', () => {
      const rt = openRuntime({ maxHardwareKeys: 2 });
      expect(rt.backend).toBe('pku');
      expect(rt.capabilities.hardwareKeys).toBe(2);
      const keys: Record<string, Key> = {};
      for (const name of ['A', 'B', 'C']) {
        keys[name] = rt.createKey({ name });
        keys[name]!.alloc(4096); // one region each: one window to retag
      }
      const model = cacheModel(2);
      // uses after each step, and what happens:
      //   A1 miss, A2 hit, B1 miss, A3 hit, C1 miss evicts B (1 < 3), A4 hit,
      //   B2 miss evicts C (1 < 4), C2 miss evicts B (2 < 4), C3 hit,
      //   B3 miss evicts C (3 < 4). LRU would have hit 5 and evicted A once.
      const script = ['A', 'A', 'B', 'A', 'C', 'A', 'B', 'C', 'C', 'B'];
      const total = { hits: 0, misses: 0, evictions: 0 };
      for (const [step, name] of script.entries()) {
        const expected = model(name);
        const d = delta(rt, () => keys[name]!.with('rw', () => undefined));
        const where = `step ${step} (${name})`;
        expect(d.gates, where).toBe(1);
        expect(d.hits, where).toBe(expected.hit ? 1 : 0);
        expect(d.misses, where).toBe(expected.hit ? 0 : 1);
        expect(d.evictions, where).toBe(expected.evicted ? 1 : 0);
        if (expected.hit) {
          expect(d.syscalls, where).toBe(0);
          expect(d.pkeyMprotectCalls, where).toBe(0);
          expect(d.pkruWrites, where).toBe(2); // open, then close
        } else {
          expect(d.pkeyMprotectCalls, where).toBe(expected.evicted ? 2 : 1);
          // pkey_mprotect calls, plus a pkey_alloc while the cache fills
          // (a pkey taken over from a closed runtime may need a shootdown
          // instead: one signal per thread)
          expect(d.syscalls - d.pkeyMprotectCalls - d.shootdownSignals, where).toBeLessThanOrEqual(expected.evicted ? 0 : 1);
        }
        expect(d.mprotectCalls, where).toBe(0);
        const s = rt.stats();
        expect(s.residentVkeys, where).toBe(Math.min(2, new Set(script.slice(0, step + 1)).size));
        expect(s.hwKeysHeld, where).toBeLessThanOrEqual(2);
        total.hits += d.hits;
        total.misses += d.misses;
        total.evictions += d.evictions;
      }
      // The script's totals, counted by hand from the comment above.
      expect(total).toEqual({ hits: 4, misses: 6, evictions: 4 });
    });

    it('eviction costs two pkey_mprotect calls whatever the number of regions of the key', () => {
      const rt = openRuntime({ maxHardwareKeys: 1 });
      const a = rt.createKey({ name: 'many' });
      const b = rt.createKey({ name: 'one' });
      for (let i = 0; i < 50; i++) a.alloc(4096);
      b.alloc(4096);
      a.with('r', () => undefined);
      const d = delta(rt, () => b.with('r', () => undefined)); // evicts a
      expect(d.misses).toBe(1);
      expect(d.evictions).toBe(1);
      expect(d.pkeyMprotectCalls).toBe(2);
      expect(d.syscalls).toBe(2);
    });

    it('a resident key: repeated gates are all hits, with no syscall', () => {
      const rt = openRuntime({ maxHardwareKeys: 2 });
      const k = rt.createKey();
      const r = k.alloc(4096);
      k.with('rw', () => undefined); // bind
      const d = delta(rt, () => {
        for (let i = 0; i < 1000; i++) k.with('rw', () => (r.bytes[0] = i & 0xff));
      });
      expect(d.gates).toBe(1000);
      expect(d.hits).toBe(1000);
      expect(d.misses).toBe(0);
      expect(d.syscalls).toBe(0);
      expect(d.pkruWrites).toBe(2000);
    });
  });

  describe('mprotect backend', () => {
    it('a gate on a key whose access is none: one miss, two mprotect calls (and once per key a madvise that gives its pages a VMA of their own); no hardware keys', () => {
      const rt = openRuntime({ backend: 'mprotect' });
      const keys = ['A', 'B', 'C'].map((name) => rt.createKey({ name }));
      for (const k of keys) k.alloc(4096);
      const script = [0, 0, 1, 0, 2, 0, 1, 2, 2, 1];
      const seen = new Set<number>();
      for (const [step, i] of script.entries()) {
        const d = delta(rt, () => keys[i]!.with('rw', () => undefined));
        const where = `step ${step}`;
        expect(d.gates, where).toBe(1);
        expect(d.misses, where).toBe(1);
        expect(d.hits, where).toBe(0);
        expect(d.mprotectCalls, where).toBe(2);
        expect(d.syscalls, where).toBe(seen.has(i) ? 2 : 3);
        seen.add(i);
        expect(d.evictions, where).toBe(0);
        expect(d.pkeyMprotectCalls, where).toBe(0);
        expect(d.pkruWrites, where).toBe(0);
      }
      const s = rt.stats();
      expect(s.hwKeysHeld).toBe(0);
      expect(s.residentVkeys).toBe(0);
    });

    it('a gate the process-wide access already grants is a hit with no syscall', () => {
      const rt = openRuntime({ backend: 'mprotect' });
      const k = rt.createKey({ access: 'rw' });
      k.alloc(4096);
      const d = delta(rt, () => {
        k.with('r', () => undefined);
        k.with('rw', () => undefined);
      });
      expect(d.gates).toBe(2);
      expect(d.hits).toBe(2);
      expect(d.misses).toBe(0);
      expect(d.syscalls).toBe(0);
    });

    it('nested gates on one key change the protection only where the union changes', () => {
      const rt = openRuntime({ backend: 'mprotect' });
      const k = rt.createKey();
      k.alloc(4096);
      const d = delta(rt, () => {
        k.with('r', () => {
          // none -> r: miss
          k.with('rw', () => {
            // r -> rw: miss
            k.with('r', () => undefined); // rw stays rw: hit
          }); // rw -> r on close
        }); // r -> none on close
      });
      expect(d.gates).toBe(3);
      expect(d.misses).toBe(2);
      expect(d.hits).toBe(1);
      expect(d.mprotectCalls).toBe(4);
    });

    it('protect() is one mprotect call per change, whatever the number of regions', () => {
      const rt = openRuntime({ backend: 'mprotect' });
      const k = rt.createKey();
      for (let i = 0; i < 20; i++) k.alloc(4096);
      const d = delta(rt, () => {
        k.protect('r');
        k.protect('rw');
        k.protect('none');
      });
      expect(d.mprotectCalls).toBe(3);
      expect(d.syscalls).toBe(3);
    });
  });
});
