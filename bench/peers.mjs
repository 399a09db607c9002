// vmpk against what a Node user already has for keeping a secret out of
// reach (issue 12): sodium-native's secure memory (sodium_malloc, then
// sodium_mprotect_noaccess / _readonly around each use) and, as the floor,
// a plain Buffer that protects nothing.
//
//   node bench/peers.mjs [--trials T] [--cycles C] [--strace]
//     --trials T   timed trials per case (default 9)
//     --cycles C   use-the-secret cycles per timed pass (default 4096)
//     --strace     also count every memory syscall per operation with
//                  strace (exact, from the kernel's side)
//
// Cases, each for 1, 64 and 4096 secrets of 32 bytes:
//   cycle         use the secret: open it, read its 32 bytes, close it.
//                 vmpk: key.with('r', read); sodium: sodium_mprotect_readonly,
//                 read, sodium_mprotect_noaccess; Buffer: read. Secrets are
//                 picked in a fixed-seed uniform order (no locality for a
//                 cache to use: 4096 secrets on 14 hardware keys miss).
//   create+free   make 1000 secrets (vmpk: createKey() + alloc(32), and
//                 createKeys(1000, { regionSize: 32 }); sodium: sodium_malloc
//                 + sodium_mprotect_noaccess; Buffer.alloc), then free them
//                 (key.destroy(); sodium_free; dropped).
//
// Times are process CPU time per operation; the sides of a case run in
// turn within each trial (the order rotating), and the ratios are per
// trial, median and quartiles. Each vmpk backend runs in its own process,
// with sodium and Buffer measured beside it there: mprotect on the release
// library; pku on the real library where the CPU has PKU, else on the stub
// build (PKRU a thread-local variable, pkey_mprotect simulated by mprotect:
// its syscall counts are the real backend's, its times leave out WRPKRU and
// it protects nothing). Syscalls per operation: vmpk's from its stats()
// (syscalls + metaMprotectCalls), exact; sodium's are two mprotect calls
// per cycle by construction, which --strace shows from the kernel's side.
// A third process runs the mprotect backend with VMPK_META=off (vmpk's
// metadata left writable): what the metadata's protection costs there.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ROOT, RELEASE_SO, STUB_SO, BUILD, cpuHasPku, ensureBuilt, have, heading, machine, median, prng, quantile, saveResult } from './lib.mjs';

const SECRET = 32;
const COUNTS = [1, 64, 4096];
const CREATE = 1000;

function parseArgs(argv) {
  const o = { trials: 9, cycles: 4096, strace: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const int = () => {
      const x = Number(argv[++i]);
      if (!Number.isInteger(x) || x < 1) throw new Error(`peers: ${a} must be a whole number >= 1`);
      return x;
    };
    if (a === '--trials') o.trials = int();
    else if (a === '--cycles') o.cycles = int();
    else if (a === '--strace') o.strace = true;
    else if (a === '--child') o.child = argv[++i];
    else if (a === '--trace') o.trace = argv[++i]; // side:case:secrets, under strace
    else throw new Error(`peers: unknown argument ${a} (see the comment at the top of bench/peers.mjs)`);
  }
  return o;
}

function cpuNs(fn) {
  const t0 = process.cpuUsage();
  fn();
  const d = process.cpuUsage(t0);
  return (d.user + d.system) * 1000;
}

let sink = 0;
function read32(v) {
  let s = 0;
  for (let j = 0; j < SECRET; j++) s += v[j];
  sink += s;
}

/** The three sides of the cycle case over n secrets: each a pass over seq. */
async function cycleSides(rt, n) {
  const sodium = createRequire(import.meta.url)('sodium-native');
  const batch = rt.createKeys(n, { regionSize: SECRET });
  const K = [];
  const V = [];
  const S = [];
  const B = [];
  for (let i = 0; i < n; i++) {
    K.push(batch.key(i));
    V.push(batch.region(i).bytes.subarray(0, SECRET)); // one view per region, made once
    const s = sodium.sodium_malloc(SECRET);
    s.fill(i & 0xff);
    sodium.sodium_mprotect_noaccess(s);
    S.push(s);
    B.push(Buffer.alloc(SECRET, i & 0xff));
  }
  for (let i = 0; i < n; i++) K[i].with('rw', () => V[i].fill(i & 0xff));
  return {
    vmpk: (seq) => {
      for (let i = 0; i < seq.length; i++) {
        const j = seq[i];
        K[j].with('r', () => read32(V[j]));
      }
    },
    sodium: (seq) => {
      for (let i = 0; i < seq.length; i++) {
        const s = S[seq[i]];
        sodium.sodium_mprotect_readonly(s);
        read32(s);
        sodium.sodium_mprotect_noaccess(s);
      }
    },
    buffer: (seq) => {
      for (let i = 0; i < seq.length; i++) read32(B[seq[i]]);
    },
    done: () => {
      for (const k of K) k.destroy();
      for (const s of S) sodium.sodium_free(s);
    },
  };
}

/** The create+free case: each side makes `CREATE` secrets and frees them. */
function createSides(rt) {
  const sodium = createRequire(import.meta.url)('sodium-native');
  return {
    vmpk: () => {
      const keys = new Array(CREATE);
      for (let i = 0; i < CREATE; i++) {
        const k = rt.createKey();
        k.alloc(SECRET);
        keys[i] = k;
      }
      for (const k of keys) k.destroy();
    },
    'vmpk batch': () => {
      const b = rt.createKeys(CREATE, { regionSize: SECRET });
      for (let i = 0; i < CREATE; i++) b.key(i).destroy();
    },
    sodium: () => {
      const bufs = new Array(CREATE);
      for (let i = 0; i < CREATE; i++) {
        const s = sodium.sodium_malloc(SECRET);
        sodium.sodium_mprotect_noaccess(s);
        bufs[i] = s;
      }
      for (const s of bufs) sodium.sodium_free(s);
    },
    buffer: () => {
      const bufs = new Array(CREATE);
      for (let i = 0; i < CREATE; i++) bufs[i] = Buffer.alloc(SECRET);
      return bufs.length;
    },
  };
}

function summary(xs) {
  return { median: median(xs), q1: quantile(xs, 0.25), q3: quantile(xs, 0.75), n: xs.length };
}

/** Timed trials of `sides` (name -> pass), rotating the order; ns per op and ratios to vmpk. */
function trials(sides, ops, pass, o) {
  const names = Object.keys(sides);
  const ns = Object.fromEntries(names.map((s) => [s, []]));
  for (const s of names) pass(sides[s]); // warm up
  for (let t = 0; t < o.trials; t++) {
    for (let i = 0; i < names.length; i++) {
      const s = names[(t + i) % names.length];
      ns[s].push(cpuNs(() => pass(sides[s])) / ops);
    }
  }
  const out = {};
  for (const s of names) {
    out[s] = { ns: median(ns[s]) };
    if (s !== 'vmpk') out[s].vmpkOver = summary(ns.vmpk.map((v, i) => v / ns[s][i]));
  }
  return out;
}

function syscallsOf(rt, fn) {
  const a = rt.stats();
  fn();
  const b = rt.stats();
  return { syscalls: b.syscalls - a.syscalls, meta: b.metaMprotectCalls - a.metaMprotectCalls, misses: b.misses - a.misses, gates: b.gates - a.gates };
}

async function child(backend, o) {
  const { open } = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href);
  const rt = open({ backend });
  const row = { backend, stubbed: rt.capabilities.pkruStubbed, hardwareKeys: rt.capabilities.hardwareKeys, cycle: {}, create: {} };
  for (const n of COUNTS) {
    const rand = prng(0xc0ffee + n);
    const seq = Int32Array.from({ length: o.cycles }, () => Math.floor(rand() * n));
    const sides = await cycleSides(rt, n);
    const { done, ...timed } = sides;
    const r = trials(timed, seq.length, (p) => p(seq), o);
    const c = syscallsOf(rt, () => timed.vmpk(seq));
    r.vmpk.syscallsPerCycle = (c.syscalls + c.meta) / seq.length;
    r.vmpk.metaPerCycle = c.meta / seq.length;
    r.vmpk.hitRate = 1 - c.misses / c.gates;
    row.cycle[n] = r;
    done();
  }
  const sides = createSides(rt);
  const r = trials(sides, CREATE, (p) => p(), o);
  for (const s of ['vmpk', 'vmpk batch']) {
    const c = syscallsOf(rt, sides[s]);
    r[s].syscallsPerSecret = (c.syscalls + c.meta) / CREATE;
  }
  row.create = r;
  rt.close();
  return row;
}

/** Under strace: one operation kind, run `reps` times between two marker writes. */
async function traced(spec) {
  const [side, kind] = spec.split(':');
  const { open } = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href);
  const rt = open({ backend: process.env.VMPK_PEERS_BACKEND });
  const reps = 1000;
  const seq = new Int32Array(reps); // one secret, used again and again
  let run;
  if (kind === 'cycle') {
    const sides = await cycleSides(rt, 1);
    run = () => sides[side](seq);
  } else {
    const sides = createSides(rt);
    run = sides[side];
  }
  run(); // warm up
  const fd = openSync('/dev/null', 'w');
  writeSync(fd, 'vmpk-peers-begin');
  run();
  writeSync(fd, 'vmpk-peers-end');
  rt.close();
}

function straceCounts(side, kind, backend, library) {
  const out = join(BUILD, `peers-strace-${backend}-${side.replace(' ', '-')}-${kind}.txt`);
  const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=%memory,write', '-o', out, process.execPath, fileURLToPath(import.meta.url), '--trace', `${side}:${kind}`], {
    cwd: ROOT,
    env: { ...process.env, VMPK_LIBRARY: library, VMPK_PEERS_BACKEND: backend },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`peers: strace of ${side} ${kind} exited with ${r.status}`);
  const lines = readFileSync(out, 'utf8').split('\n');
  rmSync(out);
  const from = lines.findIndex((l) => l.includes('vmpk-peers-begin'));
  const to = lines.findIndex((l) => l.includes('vmpk-peers-end'));
  const counts = {};
  for (const l of lines.slice(from + 1, to)) {
    const m = l.match(/^\d+\s+(\w+)\(/);
    if (m && m[1] !== 'write') counts[m[1]] = (counts[m[1]] ?? 0) + 1;
  }
  const ops = kind === 'cycle' ? 1000 : CREATE;
  return Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v / ops]));
}

function printRows(rows) {
  const ratio = (x) => `${x.median.toFixed(2)}x (${x.q1.toFixed(2)}-${x.q3.toFixed(2)})`;
  for (const row of rows) {
    const label = row.backend === 'pku' && row.stubbed ? 'pku (STUB build: no WRPKRU, protects nothing)' : row.metaOff ? `${row.backend}, VMPK_META=off (metadata NOT protected: comparison only)` : row.backend;
    console.log(`vmpk ${label}, ${row.hardwareKeys} hardware keys:`);
    console.log(`  use the secret (open, read ${SECRET} B, close), per cycle:`);
    console.log(`    secrets   vmpk ns  sodium ns  Buffer ns   vmpk/sodium          vmpk/Buffer          vmpk syscalls (meta)  hit rate`);
    for (const n of COUNTS) {
      const c = row.cycle[n];
      console.log(`    ${String(n).padStart(7)}  ${c.vmpk.ns.toFixed(0).padStart(8)}  ${c.sodium.ns.toFixed(0).padStart(9)}  ${c.buffer.ns.toFixed(1).padStart(9)}   ${ratio(c.sodium.vmpkOver).padEnd(19)}  ${ratio(c.buffer.vmpkOver).padEnd(19)}  ${c.vmpk.syscallsPerCycle.toFixed(3).padStart(6)} (${c.vmpk.metaPerCycle.toFixed(3)})       ${c.vmpk.hitRate.toFixed(3)}`);
    }
    const r = row.create;
    console.log(`  create + free one secret (${CREATE} per pass), per secret:`);
    console.log(`    vmpk createKey()+alloc() ${r.vmpk.ns.toFixed(0)} ns (${r.vmpk.syscallsPerSecret.toFixed(3)} syscalls), createKeys() ${r['vmpk batch'].ns.toFixed(0)} ns (${r['vmpk batch'].syscallsPerSecret.toFixed(3)}), sodium ${r.sodium.ns.toFixed(0)} ns, Buffer ${r.buffer.ns.toFixed(0)} ns`);
    console.log(`    vmpk one by one / sodium ${ratio(r.sodium.vmpkOver)}; / Buffer ${ratio(r.buffer.vmpkOver)}`);
  }
}

export async function main(argv = process.argv.slice(2)) {
  const o = parseArgs(argv);
  if (o.child) {
    console.log(JSON.stringify(await child(o.child, o)));
    return undefined;
  }
  if (o.trace) {
    await traced(o.trace);
    return undefined;
  }
  heading('peers: vmpk against sodium-native secure memory and a plain Buffer');
  ensureBuilt({ dist: true });
  const pkuLibrary = cpuHasPku() ? RELEASE_SO : STUB_SO;
  const runs = [
    ['mprotect', RELEASE_SO],
    ['pku', pkuLibrary],
    ['mprotect', RELEASE_SO, { VMPK_META: 'off' }],
  ];
  const command = `node bench/peers.mjs ${argv.join(' ')}`.trim();
  console.log(`machine: ${machine()}; node ${process.version}; ${new Date().toISOString().slice(0, 10)}`);
  console.log(`command: ${command}; ${o.trials} trials, ${o.cycles} cycles per pass; process CPU time; sides interleaved in each process`);
  const rows = [];
  for (const [backend, library, env] of runs) {
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...argv, '--child', backend], {
      cwd: ROOT,
      env: { ...process.env, VMPK_LIBRARY: library, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`peers: the ${backend} run exited with status ${r.status ?? r.signal}`);
    rows.push({ library: library.replace(ROOT, ''), metaOff: !!env, ...JSON.parse(r.stdout.trim().split('\n').at(-1)) });
  }
  printRows(rows);
  let strace;
  if (o.strace) {
    if (!have('strace')) {
      console.log('strace: not installed, skipped');
    } else {
      strace = {};
      console.log('memory syscalls per operation, counted by strace -f between two markers (1000 operations, one secret):');
      for (const [backend, library, env] of runs) {
        if (env) continue;
        for (const [side, kind] of [['vmpk', 'cycle'], ['sodium', 'cycle'], ['vmpk', 'create'], ['vmpk batch', 'create'], ['sodium', 'create']]) {
          if (side === 'sodium' && backend === 'pku') continue; // the same as beside mprotect
          const c = straceCounts(side, kind, backend, library);
          strace[`${backend} ${side} ${kind}`] = c;
          const text = Object.entries(c).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ') || 'none';
          console.log(`  ${side === 'sodium' ? 'sodium' : `${side} (${backend})`} ${kind}: ${text}`);
        }
      }
    }
  }
  saveResult('peers', { command, machine: machine(), date: new Date().toISOString(), node: process.version, rows, strace });
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
