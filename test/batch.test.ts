// runtime.createKeys(): a batch makes the same keys, with the same exact
// stats, as createKey() + alloc() one at a time; its objects are ordinary
// Keys and Regions; bad input throws and changes nothing; a failed batch
// leaves no key.
import { describe, expect, it } from 'vitest';
import type { Runtime, Stats } from '../src/index.js';
import { expectVmpkError, openRuntime } from './helpers/vmpk.js';

const COUNTED = ['liveVkeys', 'regions', 'mappedBytes', 'metadataBytes', 'syscalls', 'mprotectCalls', 'pkeyMprotectCalls'] as const;

function pick(s: Stats): Record<string, number> {
  return Object.fromEntries(COUNTED.map((f) => [f, s[f]]));
}

describe('runtime.createKeys()', () => {
  it('counts exactly as the same keys made one at a time', () => {
    const one = openRuntime();
    const many = openRuntime();
    const n = 5000; // more than one chunk of the vkey table (4096 slots)
    for (let i = 0; i < n; i++) one.createKey().alloc(4096);
    const batch = many.createKeys(n, { regionSize: 4096 });
    expect(batch.length).toBe(n);
    expect(pick(many.stats())).toEqual(pick(one.stats()));
    const s = many.stats();
    expect(s.liveVkeys).toBe(n);
    expect(s.regions).toBe(n);
    expect(s.mappedBytes).toBe(n * 4096);
    expect(s.metadataBytes / s.liveVkeys).toBeLessThanOrEqual(64); // the target of issue 6
  });

  it('gives ordinary keys and regions, each made once, on first use', () => {
    const rt = openRuntime();
    const batch = rt.createKeys(16, { regionSize: 5000 });
    expect(batch.regionSize).toBe(5000);
    const k = batch.key(3);
    expect(batch.key(3)).toBe(k);
    const r = batch.region(3)!;
    expect(r).toBe(batch.region(3));
    expect(k.regions).toEqual([r]);
    expect(r.key).toBe(k);
    expect(r.address).toBe(batch.address(3));
    expect(r.size).toBe(5000);
    expect(r.mappedSize).toBe(2 * rt.capabilities.pageSize);
    expect(k.name).toBeNull();
    expect(k.access).toBe('none');
    const addresses = new Set(Array.from({ length: 16 }, (_, i) => batch.address(i)));
    expect(addresses.size).toBe(16);
    // Only its own gate opens it (a stub build protects nothing).
    if (!rt.capabilities.pkruStubbed) expect(rt.probe(r, 'r')).toBe(false);
    k.with('rw', () => {
      expect(rt.probe(r, 'rw', 4999)).toBe(true);
      if (!rt.capabilities.pkruStubbed) expect(rt.probe(batch.region(4)!, 'r')).toBe(false);
      r.bytes[4999] = 42;
    });
    expect(k.with('r', () => r.bytes[4999])).toBe(42);
    expect([...batch]).toHaveLength(16);
    expect([...batch][3]).toBe(k);
    batch.key(5).destroy();
    expect(batch.key(5).destroyed).toBe(true);
    expect(batch.region(5)!.freed).toBe(true);
    expect(rt.stats().liveVkeys).toBe(15);
  });

  it('without regionSize: keys with no region, the access asked for', () => {
    const rt = openRuntime();
    const batch = rt.createKeys(3, { access: 'rw', windowSize: 2 << 20 });
    expect(batch.region(0)).toBeNull();
    expect(batch.address(0)).toBe(0n);
    expect(batch.key(0).regions).toEqual([]);
    expect(batch.key(0).access).toBe('rw');
    const r = batch.key(1).alloc(2 << 20); // the whole 2 MiB window
    expect(rt.probe(r, 'rw')).toBe(true);
    expect(rt.stats().regions).toBe(1);
  });

  it('rejects bad input before making anything', () => {
    const rt = openRuntime();
    const before = rt.stats();
    for (const count of [-1, 1.5, '3', 2 ** 24, NaN, 3n]) expectVmpkError(() => rt.createKeys(count as number), 'INVALID_ARGUMENT');
    expect(expectVmpkError(() => rt.createKeys(2, { name: 'x' } as object), 'INVALID_ARGUMENT').message).toMatch(/unnamed/);
    expect(expectVmpkError(() => rt.createKeys(2, { regionsize: 4096 } as object), 'INVALID_ARGUMENT').message).toMatch(/did you mean 'regionSize'/);
    expect(expectVmpkError(() => rt.createKeys(2, { regionSize: (1 << 20) + 1 }), 'INVALID_ARGUMENT').message).toMatch(/larger than each key's window/);
    expectVmpkError(() => rt.createKeys(2, { regionSize: -1 }), 'INVALID_ARGUMENT');
    expectVmpkError(() => rt.createKeys(2, { access: 'w' as 'rw' }), 'INVALID_ARGUMENT');
    expectVmpkError(() => rt.createKeys(2, { windowSize: 0 }), 'INVALID_ARGUMENT');
    expectVmpkError(() => rt.createKeys(2, null as unknown as object), 'INVALID_ARGUMENT');
    expect(rt.stats()).toEqual(before);
    const empty = rt.createKeys(0, { regionSize: 4096 });
    expect(empty.length).toBe(0);
    expectVmpkError(() => empty.key(0), 'INVALID_ARGUMENT');
    const two = rt.createKeys(2);
    for (const i of [-1, 2, 0.5, '0']) expectVmpkError(() => two.key(i as number), 'INVALID_ARGUMENT');
    expectVmpkError(() => two.address(2), 'INVALID_ARGUMENT');
    expectVmpkError(() => two.region(2), 'INVALID_ARGUMENT');
  });

  it('throws RUNTIME_CLOSED on a closed runtime; its batch keys read destroyed', () => {
    const rt: Runtime = openRuntime();
    const batch = rt.createKeys(2, { regionSize: 4096 });
    rt.close();
    expectVmpkError(() => rt.createKeys(1), 'RUNTIME_CLOSED');
    expect(batch.key(0).destroyed).toBe(true);
    expectVmpkError(() => batch.key(1).with('r', () => 0), 'RUNTIME_CLOSED');
  });

  // Last: the failed windows of 1 TiB stay in the arena's free list.
  it('a batch that fails part way leaves no key of it (OUT_OF_MEMORY)', () => {
    const rt = openRuntime();
    const keep = rt.createKey().alloc(4096);
    const before = rt.stats();
    // The arena holds at most 4 TiB for the whole process: 8 windows of 1 TiB cannot fit.
    expectVmpkError(() => rt.createKeys(8, { windowSize: 2 ** 40, regionSize: 4096 }), 'OUT_OF_MEMORY');
    const after = rt.stats();
    expect(after.liveVkeys).toBe(before.liveVkeys);
    expect(after.regions).toBe(before.regions);
    expect(after.mappedBytes).toBe(before.mappedBytes);
    expect(keep.freed).toBe(false);
    expect(rt.probe(keep, 'r')).toBe(false); // still its key's: closed outside a gate, open in one
    expect(keep.key.with('r', () => rt.probe(keep, 'r'))).toBe(true);
  });
});
