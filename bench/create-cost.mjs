// Where the time of creating a key with one region goes, layer by layer
// (docs/benchmarks.md, section 6). Per key, CPU time, each layer 5 times
// over 100,000 keys in fresh runtimes, median; and each as a ratio to the
// batch, per run. Once per backend the library here runs (the release
// library: mprotect only where the CPU has no PKU; the stub build too, for
// the pku backend's logic), each in its own process. How the metadata is
// guarded shows in the syscalls: with PKU (or the stub) a write-disabled
// pkey, two WRPKRUs per entry point; without, two mprotect calls per entry
// point (META_MPROTECT), which the batch pays once per 1024 keys:
//
//   batch       rt.createKeys(n, { regionSize }): one koffi call, the core's own work
//   koffi       vmpk_key_create + vmpk_alloc declared as src/native.ts declares
//               them, called straight, out-parameters in one-element arrays
//   binding     the same through src/native.ts's wrappers (dist/native.js)
//   API         rt.createKey() + key.alloc(): checks, Key, KeyState, Region, Set
//
//   node bench/create-cost.mjs
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ROOT, RELEASE_SO, STUB_SO, cpuHasPku, ensureBuilt, heading, machine, median, num } from './lib.mjs';

const N = 100000;
const RUNS = 5;

function cpuNs(fn) {
  const t0 = process.cpuUsage();
  fn();
  const d = process.cpuUsage(t0);
  return (d.user + d.system) * 1000;
}

async function measure(backend) {
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
  const syscalls = {};
  for (let run = 0; run < RUNS; run++) {
    for (const [name, fn] of Object.entries(layers)) {
      const rt = open({ backend });
      ns[name].push(cpuNs(() => fn(rt)) / N);
      if (run === 0) {
        const s = rt.stats();
        syscalls[name] = { syscalls: s.syscalls / N, meta: s.metaMprotectCalls / N };
      }
      rt.close();
    }
  }
  const probe = open({ backend });
  const stubbed = probe.capabilities.pkruStubbed;
  probe.close();
  return { backend, stubbed, ns, syscalls };
}

export async function main(argv = process.argv.slice(2)) {
  if (argv[0] === '--child') {
    console.log(JSON.stringify(await measure(argv[1])));
    return undefined;
  }
  heading(`create-cost: one key with a 4096-byte region, layer by layer, ${N} keys per run`);
  ensureBuilt({ dist: true });
  console.log(`machine: ${machine()}; node ${process.version}; command: node bench/create-cost.mjs`);
  const runs = cpuHasPku()
    ? [['mprotect', RELEASE_SO], ['pku', RELEASE_SO]]
    : [['mprotect', RELEASE_SO], ['mprotect', STUB_SO], ['pku', STUB_SO]];
  const out = [];
  for (const [backend, library] of runs) {
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', backend], {
      cwd: ROOT,
      env: { ...process.env, VMPK_LIBRARY: library },
      stdio: ['ignore', 'pipe', 'inherit'],
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`create-cost: the ${backend} run exited with status ${r.status ?? r.signal}`);
    const m = JSON.parse(r.stdout.trim().split('\n').at(-1));
    const meta = m.syscalls.api.meta > 0 ? 'metadata guarded by mprotect' : library === STUB_SO ? 'metadata guarded by a pkey (STUB build: PKRU a variable, so protects nothing)' : 'metadata guarded by a pkey';
    console.log(`${backend} backend, ${library.replace(ROOT, '')}, ${meta}:`);
    const base = m.ns.batch;
    for (const [name, xs] of Object.entries(m.ns)) {
      const ratios = xs.map((x, i) => x / base[i]);
      const c = m.syscalls[name];
      console.log(`  ${name.padEnd(8)} ${median(xs).toFixed(0).padStart(6)} ns per key  ${median(ratios).toFixed(1).padStart(6)}x the batch  ${num(Math.round(1e9 / median(xs))).padStart(11)} keys/s  syscalls ${c.syscalls.toFixed(4)} + metadata mprotect ${c.meta.toFixed(4)} per key`);
    }
    out.push({ library: library.replace(ROOT, ''), ...m });
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
