// key.with() calls the core by a 32-bit gate index (vmpk_gate_index,
// vmpk_enter_r/_rw, vmpk_leave_index) where the key has one. The index packs
// the handle's runtime id, slot + 1 and generation exactly, so a stale index
// is refused as a stale handle is, and opens no later key of its slot.
import { describe, expect, it } from 'vitest';
import { E_GATE_ORDER, E_INVALID, E_STALE } from '../src/codes.js';
import { getNative, libraryPath } from '../src/native.js';
import { openRuntime } from './helpers/vmpk.js';

describe('gate indexes', () => {
  const n = getNative(libraryPath());

  it('pack runtime id, generation and slot + 1 of the handle, each whole', () => {
    const rt = openRuntime();
    const key = rt.createKey();
    const h = key.handle().key;
    const slot1 = h % 2 ** 24;
    const gen = Math.floor(h / 2 ** 24) % 2 ** 21;
    const id = Math.floor(h / 2 ** 45);
    expect(n.gateIndex(h)).toBe(((id << 29) | (gen << 20) | slot1) >>> 0);
    // past 9 bits of generation or 20 of slot: no index, the handle is used
    expect(n.gateIndex(id * 2 ** 45 + 512 * 2 ** 24 + slot1)).toBe(0);
    expect(n.gateIndex(id * 2 ** 45 + gen * 2 ** 24 + 2 ** 20)).toBe(0);
    expect(n.gateIndex(0)).toBe(0);
  });

  it('key.with() works through them: writes in rw, reads in r, counted as gates', () => {
    const rt = openRuntime();
    const key = rt.createKey();
    const region = key.alloc(4096);
    const before = rt.stats();
    key.with('rw', () => {
      region.bytes[0] = 42;
    });
    expect(key.with('r', () => region.bytes[0])).toBe(42);
    const after = rt.stats();
    expect(after.gates - before.gates).toBe(2);
    expect(n.gateIndex(key.handle().key)).not.toBe(0);
  });

  it('a stale index is refused after its key is destroyed and its slot reused; forged ones open nothing', () => {
    const rt = openRuntime();
    const old = rt.createKey();
    const oldHandle = old.handle().key;
    const oldIx = n.gateIndex(oldHandle);
    old.destroy();
    const next = rt.createKey();
    const nextHandle = next.handle().key;
    expect(nextHandle % 2 ** 24).toBe(oldHandle % 2 ** 24); // the same slot, a later generation
    const nextIx = n.gateIndex(nextHandle);
    expect(nextIx).not.toBe(oldIx);
    expect(n.enterRw(oldIx)).toBe(E_STALE);
    expect(n.enterR(oldIx)).toBe(E_STALE);
    expect(n.leaveIndex(oldIx)).toBe(E_GATE_ORDER);
    for (const forged of [(nextIx + 2 ** 20) >>> 0, (nextIx - 2 ** 20) >>> 0, (nextIx ^ (1 << 29)) >>> 0, nextIx + 1]) {
      expect(n.enterRw(forged)).toBeLessThan(0);
    }
    expect(n.enterRw(0)).toBe(E_INVALID);
    expect(rt.stats().gates).toBe(0);
    expect(next.with('rw', () => 7)).toBe(7);
  });
});
