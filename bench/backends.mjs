// The pku backend against the mprotect backend on the same gate-heavy loop:
// 64 keys of one page each, a budget of 8 hardware keys, and fixed-seed gate
// sequences over the keys; each gate writes a byte of its key's region.
//
//   node bench/backends.mjs            counts, and CPU-time ratios
//   node bench/backends.mjs --counts   counts only (the QEMU guest, where
//                                      TCG makes times meaningless)
//
// Counts per gate are exact vmpk_stats() deltas over one pass after a
// warm-up pass. Where the CPU has no PKU the pku side runs the stub build
// (the pku backend's logic; PKRU a thread-local variable; pkey_mprotect
// simulated by mprotect): its counts are the real backend's, its times leave
// out WRPKRU. In the QEMU guest (PKU present) it runs the real build.
// Times are process CPU time per pass, pku and mprotect passes alternating;
// the ratio is per trial, median and quartiles over the trials.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, STUB_SO, cpuHasPku, ensureBuilt, heading, machine, median, prng, quantile, ratioText, saveResult } from './lib.mjs';

const KEYS = 64;
const BUDGET = 8;
const LENGTH = 4096; // gates per pass
const TRIALS = 15;

/** The gate sequences: key indices from fixed seeds, the same for both backends. */
function sequences() {
  const uniform = prng(0x5eed);
  const zipf = prng(0x21bf);
  const hot = prng(0x4077);
  // Zipf with s = 1: key k (0-based) drawn with weight 1 / (k + 1).
  const cdf = [];
  let acc = 0;
  for (let k = 0; k < KEYS; k++) cdf.push((acc += 1 / (k + 1)));
  const pickZipf = () => {
    const u = zipf() * acc;
    const k = cdf.findIndex((c) => u < c);
    return k < 0 ? KEYS - 1 : k;
  };
  return {
    'uniform, 64 keys': Int32Array.from({ length: LENGTH }, () => Math.floor(uniform() * KEYS)),
    'zipf(1), 64 keys': Int32Array.from({ length: LENGTH }, pickZipf),
    'uniform, 8 keys (fits)': Int32Array.from({ length: LENGTH }, () => Math.floor(hot() * BUDGET)),
  };
}

function side(open, backend) {
  const rt = open({ backend, maxHardwareKeys: BUDGET });
  const keys = [];
  const bytes = [];
  for (let k = 0; k < KEYS; k++) {
    const key = rt.createKey({ name: `bench-${backend}-${k}` });
    keys.push(key);
    bytes.push(key.alloc(4096).bytes); // one view per region, made once (about 1.5 us each)
  }
  return { backend, rt, keys, bytes };
}

function pass(s, seq) {
  const { keys, bytes } = s;
  for (let i = 0; i < seq.length; i++) {
    const k = seq[i];
    keys[k].with('rw', () => {
      bytes[k][0]++;
    });
  }
}

/** Counts per gate over one pass, after a warm-up pass of the same sequence. */
function counts(s, seq) {
  pass(s, seq);
  const a = s.rt.stats();
  pass(s, seq);
  const b = s.rt.stats();
  const g = b.gates - a.gates;
  const per = (f) => (b[f] - a[f]) / g;
  return {
    gates: g,
    misses: per('misses'),
    evictions: per('evictions'),
    syscalls: per('syscalls'),
    pkeyMprotectCalls: per('pkeyMprotectCalls'),
    mprotectCalls: per('mprotectCalls'),
    pkruWrites: per('pkruWrites'),
  };
}

function cpuTime(fn) {
  const t0 = process.cpuUsage();
  fn();
  const d = process.cpuUsage(t0);
  return d.user + d.system;
}

export async function main(argv = process.argv.slice(2)) {
  const countsOnly = argv.includes('--counts') || !!process.env.VMPK_VM;
  heading(`backends: pku against mprotect, ${KEYS} keys, budget ${BUDGET}, ${LENGTH} gates per pass`);
  if (!process.env.VMPK_VM) ensureBuilt({ dist: true });
  if (!process.env.VMPK_LIBRARY && !cpuHasPku()) process.env.VMPK_LIBRARY = STUB_SO;
  const { open } = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href);
  const library = process.env.VMPK_LIBRARY || join(ROOT, 'native', 'build', 'libvmpk.so');
  const pku = side(open, 'pku');
  const mp = side(open, 'mprotect');
  const stubbed = pku.rt.capabilities.pkruStubbed;

  console.log(`machine: ${machine()}; node ${process.version}`);
  console.log(`library: ${library.replace(ROOT, '')}; pku side: ${stubbed ? 'stub build (PKRU a variable, pkey_mprotect simulated by mprotect: exact counts, times without WRPKRU)' : 'real build'}`);
  console.log(`command: node bench/backends.mjs${countsOnly ? ' --counts' : ''}`);
  const result = { stubbed, library, keys: KEYS, budget: BUDGET, length: LENGTH, sequences: {} };
  for (const [name, seq] of Object.entries(sequences())) {
    const c = { pku: counts(pku, seq), mprotect: counts(mp, seq) };
    const r = { counts: c };
    console.log(`${name}:`);
    console.log(`  per gate                    misses  evictions  syscalls  pkey_mprotect  mprotect  PKRU writes`);
    for (const [b, x] of Object.entries(c)) {
      const f = (v) => v.toFixed(3).padStart(8);
      console.log(`  ${(b === 'pku' && stubbed ? 'pku (stub)' : b).padEnd(26)}${f(x.misses)}  ${f(x.evictions)}  ${f(x.syscalls)}  ${f(x.pkeyMprotectCalls).padStart(13)}  ${f(x.mprotectCalls)}  ${f(x.pkruWrites).padStart(11)}`);
    }
    if (!countsOnly) {
      const ratios = [];
      for (let t = 0; t < TRIALS; t++) {
        const first = t % 2 ? mp : pku;
        const second = t % 2 ? pku : mp;
        const a = cpuTime(() => pass(first, seq));
        const b = cpuTime(() => pass(second, seq));
        const tp = first === pku ? a : b;
        const tm = first === pku ? b : a;
        ratios.push(tm / tp);
      }
      r.mprotectOverPku = { median: median(ratios), q1: quantile(ratios, 0.25), q3: quantile(ratios, 0.75), trials: TRIALS };
      console.log(`  CPU time, mprotect / pku${stubbed ? ' (stub)' : ''}: ${ratioText(ratios)}`);
    }
    result.sequences[name] = r;
  }
  pku.rt.close();
  mp.rt.close();
  saveResult(stubbed ? 'backends-stub' : cpuHasPku() ? 'backends-real' : 'backends', result);
  return result;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
