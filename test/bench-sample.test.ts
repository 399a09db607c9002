// The measuring code of bench/regions.mjs: the Zipf and uniform samplers
// against their exact distributions, and the VMA counter against mappings
// whose layout is known. (The benchmark's speed is never asserted.)
import { describe, expect, it } from 'vitest';
import { openRuntime } from './helpers/vmpk.js';

// Plain .mjs modules without type declarations: imported as `any`.
const sample = await import(new URL('../bench/sample.mjs', import.meta.url).href);
const lib = await import(new URL('../bench/lib.mjs', import.meta.url).href);

/**
 * Every count within 5 standard deviations of its binomial expectation:
 * |c - N p| < 5 sqrt(N p (1 - p)). With a fixed seed the draws repeat; a
 * correct sampler fails one bin with probability under 6e-7.
 */
function expectFrequencies(counts: number[], p: ArrayLike<number>, draws: number): void {
  for (let i = 0; i < counts.length; i++) {
    const expected = draws * p[i]!;
    const sd = Math.sqrt(draws * p[i]! * (1 - p[i]!));
    expect(Math.abs(counts[i]! - expected), `bin ${i}: ${counts[i]} against ${expected.toFixed(1)} +- 5 * ${sd.toFixed(1)}`).toBeLessThan(5 * sd);
  }
}

describe('bench/sample.mjs', () => {
  it('Zipf(0.99) probabilities are r^-s / H(n, s)', () => {
    const p = sample.zipfProbabilities(10, 0.99) as Float64Array;
    let h = 0;
    for (let r = 1; r <= 10; r++) h += r ** -0.99;
    expect(p[0]).toBeCloseTo(1 / h, 12);
    expect(p[0]! / p[1]!).toBeCloseTo(2 ** 0.99, 12);
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
  });

  it('the Zipf sampler inverts the cumulative weights exactly at the bin edges', () => {
    const p = sample.zipfProbabilities(4, 0.99) as Float64Array;
    const at = (u: number) => sample.zipfSampler(4, 0.99, () => u)() as number;
    expect(at(0)).toBe(0);
    expect(at(p[0]! * (1 - 1e-9))).toBe(0);
    expect(at(p[0]! * (1 + 1e-9))).toBe(1);
    expect(at((p[0]! + p[1]!) * (1 + 1e-9))).toBe(2);
    expect(at(1 - 1e-12)).toBe(3);
  });

  it('Zipf draws over 10 ranks match their probabilities', () => {
    const draws = 200_000;
    const draw = sample.zipfSampler(10, 0.99, lib.prng(7));
    const counts = new Array(10).fill(0);
    for (let i = 0; i < draws; i++) counts[draw()]++;
    expectFrequencies(counts, sample.zipfProbabilities(10, 0.99), draws);
  });

  it('uniform draws over 7 keys are uniform; a permutation is one', () => {
    const draws = 70_000;
    const draw = sample.uniformSampler(7, lib.prng(11));
    const counts = new Array(7).fill(0);
    for (let i = 0; i < draws; i++) counts[draw()]++;
    expectFrequencies(counts, new Array(7).fill(1 / 7), draws);
    const perm = Array.from(sample.permutation(1000, lib.prng(3)) as Int32Array);
    expect([...perm].sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(perm).toEqual(Array.from(sample.permutation(1000, lib.prng(3)) as Int32Array));
    expect(perm).not.toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });
});

describe('bench/lib.mjs vmaCount()', () => {
  it('counts the VMAs a range overlaps: a read-only run inside PROT_NONE windows', () => {
    const rt = openRuntime();
    const page = rt.capabilities.pageSize;
    rt.createKey().alloc(page); // the window before, left PROT_NONE
    const key = rt.createKey();
    const region = key.alloc(3 * page);
    const from = region.address - BigInt(page);
    const to = region.address + BigInt(4 * page);
    // PROT_NONE, never tagged: the arena's one VMA around it.
    expect(lib.vmaCount(from, to)).toBe(1);
    key.protect('r');
    // PROT_NONE | three read-only pages | PROT_NONE.
    expect(lib.vmaCount(from, to)).toBe(3);
    expect(lib.vmaCount(region.address, region.address + BigInt(3 * page))).toBe(1);
    expect(lib.vmaCount(region.address + BigInt(3 * page), to)).toBe(1);
    key.protect('none'); // back to the neighbours' state: merged again
    expect(lib.vmaCount(from, to)).toBe(1);
    expect(lib.vmaCount()).toBeGreaterThan(lib.vmaCount(from, to));
  });
});
