// 100,000 vkeys with a region each, then 1,000,000 gates in a fixed random
// order: far more keys than hardware keys, so on pku nearly every gate
// evicts. Every gate checks the bytes last written to its region and writes
// new ones; at the end every region must hold exactly its last bytes.
//
// VMPK_SCALE (default 1) scales both numbers down for slow machines (the QEMU
// guest): VMPK_SCALE=0.1 means 10,000 keys and 100,000 gates.
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import type { Key } from '../src/index.js';
import { backend, openRuntime, prng } from './helpers/vmpk.js';

const scale = Number(process.env['VMPK_SCALE'] ?? '1');
if (!(scale > 0 && scale <= 1)) throw new Error(`VMPK_SCALE must be in (0, 1], got ${process.env['VMPK_SCALE']}`);
const KEYS = Math.round(100_000 * scale);
const GATES = Math.round(1_000_000 * scale);
const WORDS = 1024; // one 4 KiB page per region

/** The two words written to region i at generation g (never 0). */
function word(i: number, g: number, which: 0 | 1): number {
  let h = Math.imul(i + 1, 0x9e3779b1) ^ Math.imul(g + 1, 0x85ebca77) ^ (which ? 0xc2b2ae3d : 0x27d4eb2f);
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
  return ((h ^ (h >>> 13)) | 1) >>> 0;
}

function mapCount(): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').length - 1;
}

it(`${KEYS} vkeys, ${GATES} gates in random order (${backend} backend): every region holds exactly its last bytes`, () => {
  const mapsBefore = mapCount();
  const rt = openRuntime();
  const keys: Key[] = new Array(KEYS);
  const words: Uint32Array[] = new Array(KEYS);
  const gen = new Uint32Array(KEYS);
  for (let i = 0; i < KEYS; i++) {
    const key = rt.createKey({ name: `k${i}` });
    const r = key.alloc(WORDS * 4);
    keys[i] = key;
    words[i] = new Uint32Array(r.bytes.buffer, r.bytes.byteOffset, WORDS);
  }
  const base = rt.stats();
  expect(base.liveVkeys).toBe(KEYS);
  expect(base.regions).toBe(KEYS);

  // A distinct pattern in each region, each in a gate.
  for (let i = 0; i < KEYS; i++) {
    const w = words[i]!;
    keys[i]!.with('rw', () => {
      w[0] = word(i, 0, 0);
      w[WORDS - 1] = word(i, 0, 1);
    });
  }

  // The random gates: check, then write the next generation.
  const rand = prng(0x5eed);
  const bad: string[] = [];
  for (let n = 0; n < GATES; n++) {
    const i = (rand() * KEYS) >>> 0;
    const w = words[i]!;
    const g = gen[i]!;
    keys[i]!.with('rw', () => {
      if (w[0] !== word(i, g, 0) || w[WORDS - 1] !== word(i, g, 1)) {
        if (bad.length < 10) bad.push(`gate ${n}: region ${i} generation ${g} holds ${w[0]}, ${w[WORDS - 1]}`);
      }
      w[0] = word(i, g + 1, 0);
      w[WORDS - 1] = word(i, g + 1, 1);
    });
    gen[i] = g + 1;
  }
  expect(bad).toEqual([]);

  // Every byte of every region, once more, read-only.
  let wrong = 0;
  for (let i = 0; i < KEYS; i++) {
    const w = words[i]!;
    const g = gen[i]!;
    keys[i]!.with('r', () => {
      if (w[0] !== word(i, g, 0) || w[WORDS - 1] !== word(i, g, 1)) wrong++;
      for (let j = 1; j < WORDS - 1; j++) if (w[j] !== 0) wrong++;
    });
  }
  expect(wrong).toBe(0);

  const s = rt.stats();
  const gates = s.gates - base.gates;
  expect(gates).toBe(GATES + 2 * KEYS);
  expect(s.hits - base.hits + (s.misses - base.misses)).toBe(gates);
  if (rt.backend === 'pku') {
    // Far more keys than hardware keys: most gates evict.
    expect(s.evictions - base.evictions).toBeGreaterThan(GATES / 2);
    expect(s.residentVkeys).toBeLessThanOrEqual(rt.capabilities.hardwareKeys);
  } else {
    expect(s.evictions).toBe(0);
  }
  // Non-resident keys' pages stay in mergeable states: the number of
  // mappings does not grow with the number of keys, besides the mprotect
  // backend's 4096 keys whose pages keep a VMA of their own (two more
  // each: the arena before and after them).
  expect(mapCount() - mapsBefore).toBeLessThan(1000 + (backend === 'mprotect' ? 2 * 4096 : 0));
});
