// What protect() costs against the number of threads in the process: a
// narrowing of a key that a gate pins (the pku backend cannot just take the
// key off its hardware key, so it signals every other thread to rewrite its
// saved PKRU: a shootdown), a narrowing of an unpinned resident key (the key
// leaves its hardware key: one pkey_mprotect, no signal), and protect() on
// the mprotect backend (one mprotect). Also counted: the gate that binds the
// key again afterwards, whose pkey served a key with access 'r', so some
// thread may hold bits for it: a shootdown before the pkey is reused.
//
//   node bench/threads-shootdown.mjs            counts and times (host)
//   node bench/threads-shootdown.mjs --counts   counts only, fewer threads
//                                               (the QEMU guest: TCG makes
//                                               times meaningless)
//
// Threads: the benchmark runs in a child node with --v8-pool-size=1 and
// UV_THREADPOOL_SIZE=1, which has 5 threads of its own (main, one V8
// platform worker, one libuv pool thread, Node's signal and inspector
// helpers); each row adds W idle worker_threads (blocked in Atomics.wait,
// as a server's idle workers are). The row's "threads" is the count in
// /proc/self/task, the shootdown signals every one but the caller.
//
// Where the CPU has no PKU the pku side is the stub build: real signals,
// a real handler and real waiting for every thread's answer, but the handler
// writes a thread-local variable instead of the PKRU image in the signal
// frame (a few stores less). Times are wall-clock (the caller waits for the
// other threads), one hrtime per protect(), median and quartiles.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ROOT, STUB_SO, cpuHasPku, ensureBuilt, heading, machine, median, quantile, saveResult } from './lib.mjs';

const countsOnly = process.argv.includes('--counts');
const WORKERS = countsOnly ? [0, 2, 4, 8, 16] : [0, 2, 4, 6, 8, 16, 64, 96];
const ITERATIONS = countsOnly ? 20 : 400;
const CHILD = 'VMPK_BENCH_SHOOTDOWN_CHILD';

// libmpk (USENIX ATC 2019), its inter-thread sync with a kernel patch:
// about 1 us at 2 threads, 6 us at 11, 43 us at 101.
const LIBMPK = [
  { threads: 2, us: 1 },
  { threads: 11, us: 6 },
  { threads: 101, us: 43 },
];

const threadsNow = () => readdirSync('/proc/self/task').length;

/** Threads that keep the shootdown signal (SIGRTMAX - 3 = 61 here) blocked: it cannot reach them. */
function threadsBlocking() {
  let n = 0;
  for (const t of readdirSync('/proc/self/task')) {
    try {
      const mask = BigInt(`0x${/SigBlk:\s*([0-9a-f]+)/.exec(readFileSync(`/proc/self/task/${t}/status`, 'utf8'))[1]}`);
      if ((mask >> 60n) & 1n) n++;
    } catch {
      /* gone */
    }
  }
  return n;
}

function startIdle(n) {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const ready = new Int32Array(new SharedArrayBuffer(4));
  const src = `const { workerData: w } = require('node:worker_threads');
    const ready = new Int32Array(w.ready); Atomics.add(ready, 0, 1); Atomics.notify(ready, 0);
    Atomics.wait(new Int32Array(w.stop), 0, 0);`;
  const workers = Array.from({ length: n }, () => new Worker(src, { eval: true, workerData: { stop: stop.buffer, ready: ready.buffer } }));
  while (Atomics.load(ready, 0) < n) Atomics.wait(ready, 0, Atomics.load(ready, 0), 50);
  return async () => {
    Atomics.store(stop, 0, 1);
    Atomics.notify(stop, 0);
    await Promise.all(workers.map((w) => new Promise((resolve) => w.once('exit', resolve))));
  };
}

function summary(xs) {
  return { median: median(xs), q1: quantile(xs, 0.25), q3: quantile(xs, 0.75), n: xs.length };
}

/** In the child: every row. */
async function child() {
  const { open } = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href);
  const pku = open({ backend: 'pku', maxHardwareKeys: 4 });
  const mp = open({ backend: 'mprotect' });
  const key = pku.createKey({ name: 'shootdown' });
  key.alloc(4096);
  const keyM = mp.createKey({ name: 'mprotect' });
  keyM.alloc(4096);
  key.with('r', () => undefined); // resident; pays its own first-binding costs here
  const rows = [];
  for (const w of WORKERS) {
    const stop = startIdle(w);
    const threads = threadsNow();
    const blocking = threadsBlocking();
    const pinned = [];
    const unpinned = [];
    const mprotect = [];
    // Counts around the timed narrowing only: [shootdowns, signals, syscalls, pkey_mprotect].
    const countP = [0, 0, 0, 0];
    const countU = [0, 0, 0, 0];
    const countRebind = [0, 0];
    const add = (acc, a, b) => {
      acc[0] += b.shootdowns - a.shootdowns;
      acc[1] += b.shootdownSignals - a.shootdownSignals;
      acc[2] += b.syscalls - a.syscalls;
      acc[3] += b.pkeyMprotectCalls - a.pkeyMprotectCalls;
    };
    // A narrowing while a gate pins the key: a shootdown each time.
    key.with('r', () => {
      for (let i = 0; i < ITERATIONS; i++) {
        key.protect('r'); // widening: lazy for other threads, no signal
        const a = pku.stats();
        const t0 = process.hrtime.bigint();
        key.protect('none');
        pinned.push(Number(process.hrtime.bigint() - t0) / 1000);
        add(countP, a, pku.stats());
      }
    });
    // A narrowing of a resident key no gate pins: it leaves its hardware key.
    for (let i = 0; i < ITERATIONS; i++) {
      key.protect('r');
      // Binding it again: the pkey's last vkey had access 'r', so some
      // thread may hold bits for it: a shootdown before it is reused.
      const r0 = pku.stats();
      key.with('r', () => undefined);
      const r1 = pku.stats();
      countRebind[0] += r1.shootdowns - r0.shootdowns;
      countRebind[1] += r1.misses - r0.misses;
      const t0 = process.hrtime.bigint();
      key.protect('none');
      unpinned.push(Number(process.hrtime.bigint() - t0) / 1000);
      add(countU, r1, pku.stats());
    }
    for (let i = 0; i < ITERATIONS; i++) {
      keyM.protect('r');
      const t0 = process.hrtime.bigint();
      keyM.protect('none');
      mprotect.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
    await stop();
    rows.push({
      workers: w,
      threads,
      blocking,
      pinned: {
        shootdownsPerProtect: countP[0] / ITERATIONS,
        signalsPerShootdown: countP[1] / Math.max(1, countP[0]),
        syscallsPerProtect: countP[2] / ITERATIONS,
        us: summary(pinned),
      },
      unpinned: {
        shootdownsPerProtect: countU[0] / ITERATIONS,
        pkeyMprotectPerProtect: countU[3] / ITERATIONS,
        syscallsPerProtect: countU[2] / ITERATIONS,
        us: summary(unpinned),
      },
      rebind: { shootdownsPerMiss: countRebind[0] / Math.max(1, countRebind[1]) },
      mprotect: { us: summary(mprotect) },
    });
  }
  const stubbed = pku.capabilities.pkruStubbed;
  pku.close();
  mp.close();
  process.stdout.write(JSON.stringify({ stubbed, rows }) + '\n');
}

export async function main() {
  heading(`threads-shootdown: protect() against the number of threads${countsOnly ? ' (counts only)' : ''}`);
  if (!countsOnly) ensureBuilt({ dist: true });
  const env = { ...process.env, [CHILD]: '1', UV_THREADPOOL_SIZE: '1' };
  if (!env.VMPK_LIBRARY && !cpuHasPku()) env.VMPK_LIBRARY = STUB_SO;
  const r = spawnSync(process.execPath, ['--v8-pool-size=1', fileURLToPath(import.meta.url), ...process.argv.slice(2)], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`threads-shootdown: the child exited with ${r.status ?? r.signal}`);
  const { stubbed, rows } = JSON.parse(r.stdout.trim().split('\n').pop());
  const f = (s) => `${s.median.toFixed(1)} (${s.q1.toFixed(1)}-${s.q3.toFixed(1)})`;

  console.log(`machine: ${machine()}; node ${process.version}; library: ${(env.VMPK_LIBRARY || join(ROOT, 'native/build/libvmpk.so')).replace(ROOT, '')}${stubbed ? ' (stub build: real signals, PKRU a variable)' : ''}`);
  console.log(`${ITERATIONS} protect() calls per row; idle workers${countsOnly ? '; counts per narrowing' : "; wall-clock us per protect('none'), median (quartiles)"}`);
  console.log('workers threads | pinned: shootdowns/protect signals/shootdown syscalls/protect' + (countsOnly ? '' : '       us') + ' | unpinned: shootdowns pkey_mprotect' + (countsOnly ? '' : '       us') + ' | rebind: shootdowns/miss' + (countsOnly ? '' : ' | mprotect backend us'));
  for (const row of rows) {
    const p = row.pinned;
    const u = row.unpinned;
    let line = `${String(row.workers).padStart(7)} ${String(row.threads).padStart(7)} | ${p.shootdownsPerProtect.toFixed(2).padStart(25)} ${p.signalsPerShootdown.toFixed(1).padStart(17)} ${p.syscallsPerProtect.toFixed(1).padStart(16)}`;
    if (!countsOnly) line += ` ${f(p.us).padStart(20)}`;
    line += ` | ${u.shootdownsPerProtect.toFixed(2).padStart(19)} ${u.pkeyMprotectPerProtect.toFixed(2).padStart(13)}`;
    if (!countsOnly) line += ` ${f(u.us).padStart(16)}`;
    line += ` | ${row.rebind.shootdownsPerMiss.toFixed(2).padStart(22)}`;
    if (!countsOnly) line += ` | ${f(row.mprotect.us).padStart(18)}`;
    console.log(line);
  }
  console.log(`threads keeping SIGRTMAX-3 blocked: ${[...new Set(rows.map((r) => r.blocking))].join(', ')} (Node's own SIGUSR1 watchdog thread blocks every signal; a shootdown finds it out by reading /proc after its wait for answers)`);
  if (!countsOnly) {
    console.log("libmpk's published sync latency (kernel patch): " + LIBMPK.map((l) => `${l.us} us at ${l.threads} threads`).join(', '));
    // Per-thread slope of the pinned narrowing, from the first to the last row.
    const a = rows[0];
    const b = rows[rows.length - 1];
    const slope = (b.pinned.us.median - a.pinned.us.median) / (b.threads - a.threads);
    console.log(`shootdown slope: ${slope.toFixed(2)} us per thread (${a.threads} to ${b.threads} threads); libmpk: ${((43 - 6) / (101 - 11)).toFixed(2)} us per thread (11 to 101)`);
  }
  const result = { stubbed, countsOnly, iterations: ITERATIONS, rows, libmpk: LIBMPK };
  saveResult(countsOnly ? (stubbed ? 'threads-shootdown-counts-stub' : 'threads-shootdown-counts') : 'threads-shootdown', result);
  return result;
}

if (process.env[CHILD]) await child();
else if (import.meta.url === `file://${process.argv[1]}`) await main();
