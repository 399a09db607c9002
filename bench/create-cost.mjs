// Where the time of creating a key with one region goes, layer by layer
// (docs/benchmarks.md, section 6). Per key, CPU time, each layer 5 times
// over 100,000 keys in fresh runtimes (mprotect backend: no syscall per key
// either way), median; and each as a ratio to the batch, per run:
//
//   batch       rt.createKeys(n, { regionSize }): one koffi call, the core's own work
//   koffi       vmpk_key_create + vmpk_alloc declared as src/native.ts declares
//               them, called straight, out-parameters in one-element arrays
//   binding     the same through src/native.ts's wrappers (dist/native.js)
//   API         rt.createKey() + key.alloc(): checks, Key, KeyState, Region, Set
//
//   node bench/create-cost.mjs
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, ensureBuilt, heading, machine, median } from './lib.mjs';

const N = 100000;
const RUNS = 5;

function cpuNs(fn) {
  const t0 = process.cpuUsage();
  fn();
  const d = process.cpuUsage(t0);
  return (d.user + d.system) * 1000;
}

export async function main() {
  heading(`create-cost: one key with a 4096-byte region, layer by layer, ${N} keys per run`);
  ensureBuilt({ dist: true });
  const dist = (f) => import(pathToFileURL(join(ROOT, 'dist', f)).href);
  const { open } = await dist('index.js');
  const { getNative } = await dist('native.js');
  const n = getNative();
  // The bare koffi calls, as src/native.ts declares them.
  const { vmpk_key_create: keyCreate, vmpk_alloc: alloc } = n.raw;
  const rtPointer = (rt) => rt.handle().pointer;

  const layers = {
    batch: (rt) => rt.createKeys(N, { regionSize: 4096 }),
    koffi: (rt) => {
      const p = rtPointer(rt);
      const k = [0];
      const r = [null];
      for (let i = 0; i < N; i++) {
        if (keyCreate(p, null, 0, 0, k) !== 0 || alloc(p, k[0], 4096, r) !== 0) throw new Error('create-cost: koffi call failed');
      }
    },
    binding: (rt) => {
      const p = rtPointer(rt);
      const k = [0];
      const r = [0n];
      for (let i = 0; i < N; i++) {
        if (n.keyCreate(p, null, 0, 0, k) !== 0 || n.alloc(p, k[0], 4096, r) !== 0) throw new Error('create-cost: binding call failed');
      }
    },
    api: (rt) => {
      const keep = new Array(N);
      for (let i = 0; i < N; i++) {
        const key = rt.createKey();
        key.alloc(4096);
        keep[i] = key;
      }
    },
  };
  const ns = Object.fromEntries(Object.keys(layers).map((l) => [l, []]));
  for (let run = 0; run < RUNS; run++) {
    for (const [name, fn] of Object.entries(layers)) {
      const rt = open({ backend: 'mprotect' });
      ns[name].push(cpuNs(() => fn(rt)) / N);
      rt.close();
    }
  }
  console.log(`machine: ${machine()}; node ${process.version}; command: node bench/create-cost.mjs; mprotect backend`);
  const base = ns.batch;
  for (const [name, xs] of Object.entries(ns)) {
    const ratios = xs.map((x, i) => x / base[i]);
    console.log(`  ${name.padEnd(8)} ${median(xs).toFixed(0).padStart(6)} ns per key  ${median(ratios).toFixed(1).padStart(5)}x the batch`);
  }
  return ns;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
