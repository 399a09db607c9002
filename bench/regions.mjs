// Many isolated regions (issue 6): 1,000 to 1,000,000 vkeys, one region of
// one page each, accessed in gates (key.with) in a Zipf(0.99) and in a
// uniform order, and in a scan order (the Zipf load with every other gate
// taken instead by the next key of a sweep over all keys: a hot set under
// a one-pass scan, what flushes an LRU cache).
//
//   node bench/regions.mjs [--max N] [--gates G] [--trials T] [--counts]
//                          [--backends pku,mprotect]
//     --max N      largest number of vkeys (sizes 1e3, 1e4, ... up to N; default 1e6)
//     --gates G    gates per counted pass (default 100000)
//     --trials T   timed trials per case (default 7)
//     --counts     counts only, no times (the QEMU guest, where TCG makes
//                  times meaningless; implied there)
//     --hw-keys K  pku: use at most K hardware keys (maxHardwareKeys; default all)
//
// Per size, backend and order it reports:
//   - creation: vkeys per second of CPU time, each with its region, through
//     runtime.createKeys() (one native call) and through createKey() +
//     alloc() one at a time (two koffi calls and three objects per key),
//     each the median of 5 runs in fresh runtimes (3 at a million);
//   - metadata bytes per vkey: stats().metadataBytes / liveVkeys;
//   - VMAs: lines of /proc/self/maps before creation, after it and after the
//     gates, and those inside the part of the arena the keys' windows span;
//   - per gate, exact stats() deltas over G gates after a warm-up of G
//     others: hit rate, misses, evictions, syscalls, PKRU writes;
//   - the gate loop's throughput relative to the same loop over plain
//     ArrayBuffers with no isolation (plain ns per gate / vmpk ns per gate,
//     per trial, median and quartiles), both timed in this process in
//     alternating trials, by process CPU time.
//
// Where the CPU has no PKU the pku side runs the stub build
// (native/build/stub/libvmpk.so): the pku backend's own logic with PKRU a
// thread-local variable and pkey_mprotect simulated by mprotect. Its counts
// are exact and it protects nothing; its times leave out WRPKRU. The
// mprotect side runs in the same process on the same library. In the guest
// (PKU present) it is the real build, counts only.
//
// Each size and backend runs in a fresh process (VMA counts of one case
// would otherwise include the last case's garbage). Hot keys are spread over the arena: Zipf rank r is key perm[r] for a
// fixed-seed permutation. Key objects and views for the keys a sequence
// touches are made before the gates are counted or timed.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ROOT, STUB_SO, cpuHasPku, ensureBuilt, heading, machine, median, num, prng, quantile, saveResult, vmaCount } from './lib.mjs';
import { permutation, uniformSampler, zipfSampler } from './sample.mjs';

const REGION = 4096;
const ZIPF_S = 0.99;
const MIN_TIMED_NS = 20e6; // each timed side runs whole passes for at least 20 ms of CPU time

function parseArgs(argv) {
  const o = { max: 1e6, gates: 100000, trials: 7, counts: !!process.env.VMPK_VM, backends: ['pku', 'mprotect'] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`regions: ${a} needs a value`);
      return v;
    };
    const int = (v) => {
      const x = Number(v);
      if (!Number.isInteger(x) || x < 1) throw new Error(`regions: ${a} must be a whole number >= 1, got ${v}`);
      return x;
    };
    if (a === '--max') o.max = int(value());
    else if (a === '--gates') o.gates = int(value());
    else if (a === '--trials') o.trials = int(value());
    else if (a === '--counts') o.counts = true;
    else if (a === '--backends') o.backends = value().split(',');
    else if (a === '--hw-keys') o.hwKeys = int(value());
    else if (a === '--child') o.child = value(); // backend:vkeys, run by the parent
    else throw new Error(`regions: unknown argument ${a} (see the comment at the top of bench/regions.mjs)`);
  }
  o.sizes = [];
  for (let n = 1000; n <= o.max; n *= 10) o.sizes.push(n);
  if (o.sizes.at(-1) !== o.max) o.sizes.push(o.max);
  return o;
}

function cpuNs(fn) {
  const t0 = process.cpuUsage();
  fn();
  const d = process.cpuUsage(t0);
  return (d.user + d.system) * 1000;
}

/** CPU ns per gate of `pass` over seq, over whole passes worth at least MIN_TIMED_NS. */
function nsPerGate(pass, seq) {
  let passes = 0;
  let ns = 0;
  while (ns < MIN_TIMED_NS) {
    ns += cpuNs(() => pass(seq));
    passes++;
  }
  return ns / (passes * seq.length);
}

/** Key indices of 2 * gates gates: the first half warms up, the second is counted. */
function sequence(order, n, gates, seed) {
  const rand = prng(seed);
  const seq = new Int32Array(2 * gates);
  if (order === 'zipf') {
    const perm = permutation(n, prng(seed ^ 0x9e3779b9));
    const draw = zipfSampler(n, ZIPF_S, rand);
    for (let i = 0; i < seq.length; i++) seq[i] = perm[draw()];
  } else if (order === 'scan') {
    const perm = permutation(n, prng(seed ^ 0x9e3779b9));
    const draw = zipfSampler(n, ZIPF_S, rand);
    for (let i = 0, next = 0; i < seq.length; i++) seq[i] = i % 2 ? next++ % n : perm[draw()];
  } else {
    const draw = uniformSampler(n, rand);
    for (let i = 0; i < seq.length; i++) seq[i] = draw();
  }
  return seq;
}

/** Hit rate over seq[from..] of the best fixed choice: the `keys` keys used most there. */
function bestFixedHitRate(seq, from, keys) {
  const uses = new Map();
  for (let i = from; i < seq.length; i++) uses.set(seq[i], (uses.get(seq[i]) ?? 0) + 1);
  const top = [...uses.values()].sort((a, b) => b - a).slice(0, keys);
  return top.reduce((s, c) => s + c, 0) / (seq.length - from);
}

/** Hit rate over seq[from..] of an LRU cache of `keys` entries run over all of seq. */
function lruHitRate(seq, from, keys) {
  const lru = new Map(); // insertion order: least recently used first
  let hits = 0;
  for (let i = 0; i < seq.length; i++) {
    const k = seq[i];
    if (lru.delete(k)) {
      if (i >= from) hits++;
    } else if (lru.size === keys) {
      lru.delete(lru.keys().next().value);
    }
    lru.set(k, true);
  }
  return hits / (seq.length - from);
}

/** Renumbers the keys a sequence touches 0..m-1, in order of first use. */
function compact(seq, n) {
  const id = new Int32Array(n).fill(-1);
  const keys = [];
  const out = new Int32Array(seq.length);
  for (let i = 0; i < seq.length; i++) {
    const k = seq[i];
    if (id[k] < 0) {
      id[k] = keys.length;
      keys.push(k);
    }
    out[i] = id[k];
  }
  return { seq: out, keys };
}

function perGate(a, b) {
  const gates = b.gates - a.gates;
  const per = (f) => (b[f] - a[f]) / gates;
  return {
    gates,
    hitRate: (b.hits - a.hits) / gates,
    misses: per('misses'),
    evictions: per('evictions'),
    syscalls: per('syscalls'),
    pkeyMprotectCalls: per('pkeyMprotectCalls'),
    mprotectCalls: per('mprotectCalls'),
    pkruWrites: per('pkruWrites'),
  };
}

function summary(xs) {
  return { median: median(xs), q1: quantile(xs, 0.25), q3: quantile(xs, 0.75), trials: xs.length };
}

/** createKey() + alloc() one key at a time, in a runtime of its own: vkeys per CPU second. */
function createOneByOne(open, backend, n) {
  const rt = open({ backend });
  const keys = new Array(n);
  const ns = cpuNs(() => {
    for (let i = 0; i < n; i++) {
      const k = rt.createKey();
      k.alloc(REGION);
      keys[i] = k;
    }
  });
  rt.close();
  return n / (ns / 1e9);
}

/** Repeats of a creation measurement: a batch of a thousand takes under 1 ms, a million one by one 2 s. */
function repeats(n, counts, oneByOne) {
  return counts ? 1 : n >= 1e6 ? (oneByOne ? 1 : 3) : 5;
}

function measure(open, backend, n, o) {
  const row = { backend, vkeys: n };
  const reps = repeats(n, o.counts, false);
  // createKeys(): the last of the repeats is the runtime measured below.
  let rt;
  let batch;
  const rates = [];
  for (let i = 0; i < reps; i++) {
    rt?.close();
    rt = open(o.hwKeys ? { backend, maxHardwareKeys: o.hwKeys } : { backend });
    row.vmasBefore = vmaCount();
    const ns = cpuNs(() => {
      batch = rt.createKeys(n, { regionSize: REGION });
    });
    rates.push(n / (ns / 1e9));
  }
  row.hardwareKeys = rt.capabilities.hardwareKeys;
  if (!o.counts) row.createRate = median(rates);
  row.creationRepeats = reps;
  const created = rt.stats();
  row.metadataBytesPerVkey = created.metadataBytes / created.liveVkeys;
  row.syscallsPerCreate = created.syscalls / n;
  let lo = batch.address(0);
  let hi = lo;
  for (let i = 1; i < n; i++) {
    const a = batch.address(i);
    if (a < lo) lo = a;
    if (a > hi) hi = a;
  }
  const end = hi + BigInt(rt.capabilities.windowSize);
  row.vmasAfterCreate = vmaCount();
  row.arenaVmasAfterCreate = vmaCount(lo, end);

  row.orders = {};
  let seed = 0x5eed + n;
  for (const order of ['zipf', 'uniform', 'scan']) {
    const { seq, keys } = compact(sequence(order, n, o.gates, seed++), n);
    const K = keys.map((k) => batch.key(k));
    const V = keys.map((k) => batch.region(k).bytes); // one view per region, made once
    const gatePass = (s) => {
      for (let i = 0; i < s.length; i++) {
        const k = s[i];
        K[k].with('rw', () => {
          V[k][0]++;
        });
      }
    };
    const warm = seq.subarray(0, o.gates);
    const counted = seq.subarray(o.gates);
    gatePass(warm);
    const a = rt.stats();
    gatePass(counted);
    const b = rt.stats();
    const r = { distinctKeys: keys.length, ...perGate(a, b) };
    row.hwKeysHeld = b.hwKeysHeld; // what the cache really had: others (V8 in Node 20) may hold some
    if (backend === 'pku') {
      r.bestFixedHitRate = bestFixedHitRate(seq, o.gates, b.hwKeysHeld);
      r.lruHitRate = lruHitRate(seq, o.gates, b.hwKeysHeld);
    }
    r.vmasAfterGates = vmaCount();
    r.arenaVmasAfterGates = vmaCount(lo, end);
    if (!o.counts) {
      // The same loop with no isolation: plain ArrayBuffers, fn called directly.
      const P = keys.map(() => new Uint8Array(REGION));
      const plainPass = (s) => {
        for (let i = 0; i < s.length; i++) {
          const k = s[i];
          const fn = () => {
            P[k][0]++;
          };
          fn();
        }
      };
      plainPass(warm);
      const rel = [];
      const vmpkNs = [];
      const plainNs = [];
      for (let t = 0; t < o.trials; t++) {
        let v;
        let p;
        if (t % 2) {
          p = nsPerGate(plainPass, counted);
          v = nsPerGate(gatePass, counted);
        } else {
          v = nsPerGate(gatePass, counted);
          p = nsPerGate(plainPass, counted);
        }
        vmpkNs.push(v);
        plainNs.push(p);
        rel.push(p / v);
      }
      r.relativeThroughput = summary(rel);
      r.nsPerGate = { vmpk: median(vmpkNs), plain: median(plainNs) };
    }
    row.orders[order] = r;
  }
  rt.close();
  // Last: its million JS objects would inflate the VMA counts above.
  if (!o.counts) {
    const rates = [];
    for (let i = 0; i < repeats(n, o.counts, true); i++) rates.push(createOneByOne(open, backend, n));
    row.createRateOneByOne = median(rates);
  }
  return row;
}

/** Each (size, backend) in a fresh process, so one case's garbage never lands in another's VMA counts. */
function measureInChild(argv, backend, n) {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...argv, '--child', `${backend}:${n}`], {
    cwd: ROOT,
    env: process.env,
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new Error(`regions: the case ${backend} with ${n} vkeys exited with status ${r.status ?? r.signal}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

function printRows(rows, stubbed, counts) {
  const label = (b) => (b === 'pku' && stubbed ? 'pku (stub)' : b);
  const f = (v, d = 3) => v.toFixed(d);
  console.log('creation and footprint:');
  console.log(`  ${'vkeys'.padStart(9)}  ${'backend'.padEnd(10)}${counts ? '' : '  createKeys /s  one by one /s'}  metadata B/vkey  VMAs before  after  arena`);
  for (const r of rows) {
    const rates = counts ? '' : `  ${num(Math.round(r.createRate)).padStart(13)}  ${num(Math.round(r.createRateOneByOne)).padStart(13)}`;
    console.log(`  ${num(r.vkeys).padStart(9)}  ${label(r.backend).padEnd(10)}${rates}  ${f(r.metadataBytesPerVkey, 1).padStart(15)}  ${String(r.vmasBefore).padStart(11)}  ${String(r.vmasAfterCreate).padStart(5)}  ${String(r.arenaVmasAfterCreate).padStart(5)}`);
  }
  console.log('gates (per gate, exact stats() deltas over the counted pass):');
  console.log(`  ${'vkeys'.padStart(9)}  ${'backend'.padEnd(10)}  order    keys used  hit rate  (best fixed, LRU)  evictions  syscalls  PKRU writes  VMAs  arena${counts ? '' : '  throughput vs plain'}`);
  for (const r of rows) {
    for (const [order, g] of Object.entries(r.orders)) {
      const t = counts ? '' : `  ${(100 * g.relativeThroughput.median).toFixed(1).padStart(5)}% (${(100 * g.relativeThroughput.q1).toFixed(1)}-${(100 * g.relativeThroughput.q3).toFixed(1)})`;
      console.log(`  ${num(r.vkeys).padStart(9)}  ${label(r.backend).padEnd(10)}  ${order.padEnd(7)}  ${num(g.distinctKeys).padStart(9)}  ${f(g.hitRate).padStart(8)}  ${(g.bestFixedHitRate === undefined ? '' : `(${f(g.bestFixedHitRate)}, ${f(g.lruHitRate)})`).padEnd(17)}  ${f(g.evictions).padStart(9)}  ${f(g.syscalls).padStart(8)}  ${f(g.pkruWrites).padStart(11)}  ${String(g.vmasAfterGates).padStart(4)}  ${String(g.arenaVmasAfterGates).padStart(5)}${t}`);
    }
  }
}

export async function main(argv = process.argv.slice(2)) {
  const o = parseArgs(argv);
  if (o.child) {
    const [backend, n] = o.child.split(':');
    const { open } = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href);
    console.log(JSON.stringify(measure(open, backend, Number(n), o)));
    return undefined;
  }
  heading(`regions: ${o.sizes.map(num).join(', ')} vkeys, one ${REGION}-byte region each, gates in Zipf(${ZIPF_S}), uniform and scan order`);
  if (!process.env.VMPK_VM) ensureBuilt({ dist: true });
  if (!process.env.VMPK_LIBRARY && !cpuHasPku()) process.env.VMPK_LIBRARY = STUB_SO;
  const { open } = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href);
  const library = process.env.VMPK_LIBRARY || join(ROOT, 'native', 'build', 'libvmpk.so');
  const probe = open({ backend: o.backends.includes('pku') ? 'pku' : 'mprotect' });
  const stubbed = probe.capabilities.pkruStubbed;
  probe.close();

  const command = `node bench/regions.mjs ${argv.join(' ')}`.trim();
  console.log(`machine: ${machine()}; node ${process.version}; ${new Date().toISOString().slice(0, 10)}`);
  console.log(`library: ${library.replace(ROOT, '')}; pku side: ${stubbed ? 'STUB build (PKRU a variable, pkey_mprotect simulated by mprotect): exact counts, protects nothing, times without WRPKRU' : 'real build'}`);
  console.log(`command: ${command}; ${o.gates} gates counted per case after ${o.gates} warm-up gates${o.counts ? '; counts only' : `; ${o.trials} timed trials`}`);
  const rows = [];
  for (const n of o.sizes) {
    for (const backend of o.backends) {
      const row = measureInChild(argv, backend, n);
      rows.push(row);
      const z = row.orders.zipf;
      console.log(`  ${num(n)} vkeys, ${backend === 'pku' && stubbed ? 'pku (stub)' : backend}${backend === 'pku' ? ` (${row.hwKeysHeld} hardware keys held)` : ''}: ${o.counts ? '' : `${num(Math.round(row.createRate))} created/s, `}zipf hit rate ${z.hitRate.toFixed(3)}${z.bestFixedHitRate === undefined ? '' : ` (best fixed ${z.bestFixedHitRate.toFixed(3)}: ${(100 * z.hitRate / z.bestFixedHitRate).toFixed(1)}%; LRU ${z.lruHitRate.toFixed(3)})`}, ${z.syscalls.toFixed(3)} syscalls per gate`);
    }
  }
  printRows(rows, stubbed, o.counts);
  const result = { command, machine: machine(), date: new Date().toISOString(), node: process.version, library: library.replace(ROOT, ''), stubbed, countsOnly: o.counts, region: REGION, zipfS: ZIPF_S, gates: o.gates, trials: o.trials, rows };
  saveResult(stubbed ? 'regions-stub' : cpuHasPku() ? 'regions-real' : 'regions', result);
  return result;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
