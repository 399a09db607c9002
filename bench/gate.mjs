// The JS gate against bare koffi calls, as ratios measured side by side:
//
//   noop pair       noop(); fn(); noop()            two bare koffi void calls
//   args pair       noop_begin(rt, key, 3); fn(); noop_end(rt, key)
//                   empty C functions with vmpk_begin/vmpk_end's signatures
//   args32 pair     noop_enter32(ix); fn(); noop_leave32(ix)
//                   empty C functions with a gate index's signature
//   koffi pair      vmpk_begin(); fn(); vmpk_end()  the gate by handle, no JS API
//   koffi32 pair    vmpk_enter_rw(ix); fn(); vmpk_leave_index(ix)  the index as an argument
//   mailbox pair    box[0] = ix; vmpk_mailbox_enter_rw(); check box[1]; fn(); the same
//                   for vmpk_mailbox_leave: what with() calls (void (void), the
//                   index and result in the thread's mailbox)
//   with() pku      key.with('rw', fn), a cache hit on the pku backend
//   with() mprotect key.with('rw', fn) on the mprotect backend (2 mprotect calls)
//
//   node bench/gate.mjs            (npm run bench runs it)
//
// Where the CPU has no PKU the pku side runs the stub build
// (VMPK_LIBRARY=native/build/stub/libvmpk.so): the pku backend's real logic
// with PKRU as a thread-local variable, so the WRPKRU cost is not included.
// Both runtimes live in one process on the same library. Each trial times
// every variant once, in a rotating order, for about 2 ms of CPU time each
// (process CPU time, so time spent descheduled on a shared machine does not
// count); the ratios are per trial, and the median and quartiles over the
// trials are printed.
import koffi from 'koffi';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BUILD, ROOT, STUB_SO, cpuHasPku, ensureBuilt, heading, machine, median, quantile, ratioText, saveResult } from './lib.mjs';

const TARGET = 2.5; // with() on a hit at most 2.5x the bare koffi pair (issue 3)
const TRIALS = 101;
const BATCH_NS = 2e6;

export async function main() {
  heading("gate: key.with('rw', fn) against a pair of bare koffi calls (ratios, one process)");
  ensureBuilt({ dist: true });
  if (!process.env.VMPK_LIBRARY && !cpuHasPku()) process.env.VMPK_LIBRARY = STUB_SO;
  const { open } = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href);
  const library = process.env.VMPK_LIBRARY || join(ROOT, 'native', 'build', 'libvmpk.so');

  const noopLib = koffi.load(join(BUILD, 'libnoop.so'));
  const noop = noopLib.func('noop', 'void', []);
  const noop_begin = noopLib.func('noop_begin', 'int', ['uintptr_t', 'uint64_t', 'int']);
  const noop_end = noopLib.func('noop_end', 'int', ['uintptr_t', 'uint64_t']);
  const noop_enter32 = noopLib.func('noop_enter32', 'int', ['uint32_t']);
  const noop_leave32 = noopLib.func('noop_leave32', 'int', ['uint32_t']);

  // The gate's own two koffi calls, as src/native.ts declares them (its raw
  // functions, on the library the JS API loads), on a runtime opened through
  // the C API (the JS API hides its handles).
  const { getNative } = await import(pathToFileURL(join(ROOT, 'dist', 'native.js')).href);
  const { vmpk_open, vmpk_close, vmpk_key_create, vmpk_begin, vmpk_end, vmpk_gate_index, vmpk_enter_rw, vmpk_leave_index, vmpk_gate_mailbox, vmpk_mailbox_enter_rw, vmpk_mailbox_leave } = getNative(library).raw;
  const box = new Int32Array(koffi.view(vmpk_gate_mailbox(), 8));
  const cell = [0];
  if (vmpk_open({ backend: 1, max_hw_keys: 0, window_size: 0, harden: 0 }, cell) !== 0) throw new Error('gate: vmpk_open failed');
  const rawRt = Number(cell[0]);
  if (vmpk_key_create(rawRt, null, 0, 0, cell) !== 0) throw new Error('gate: vmpk_key_create failed');
  const rawKey = Number(cell[0]);
  const rawIndex = vmpk_gate_index(rawKey);
  if (rawIndex === 0) throw new Error('gate: the key has no gate index');

  const pku = open({ backend: 'pku' });
  const mp = open({ backend: 'mprotect' });
  const keyP = pku.createKey({ name: 'bench-pku' });
  const keyM = mp.createKey({ name: 'bench-mprotect' });
  keyP.alloc(4096);
  keyM.alloc(4096);
  const stubbed = pku.capabilities.pkruStubbed;

  let sink = 0;
  const fn = () => 1;
  const variants = {
    noop: (n) => {
      for (let i = 0; i < n; i++) {
        noop();
        sink += fn();
        noop();
      }
    },
    args: (n) => {
      for (let i = 0; i < n; i++) {
        if (noop_begin(rawRt, rawKey, 3) !== 0) throw new Error('gate: noop_begin failed');
        sink += fn();
        if (noop_end(rawRt, rawKey) !== 0) throw new Error('gate: noop_end failed');
      }
    },
    args32: (n) => {
      for (let i = 0; i < n; i++) {
        if (noop_enter32(0x1000001) !== 0) throw new Error('gate: noop_enter32 failed');
        sink += fn();
        if (noop_leave32(0x1000001) !== 0) throw new Error('gate: noop_leave32 failed');
      }
    },
    koffi: (n) => {
      for (let i = 0; i < n; i++) {
        if (vmpk_begin(rawRt, rawKey, 3) !== 0) throw new Error('gate: vmpk_begin failed');
        sink += fn();
        if (vmpk_end(rawRt, rawKey) !== 0) throw new Error('gate: vmpk_end failed');
      }
    },
    koffi32: (n) => {
      for (let i = 0; i < n; i++) {
        if (vmpk_enter_rw(rawIndex) !== 0) throw new Error('gate: vmpk_enter_rw failed');
        sink += fn();
        if (vmpk_leave_index(rawIndex) !== 0) throw new Error('gate: vmpk_leave_index failed');
      }
    },
    mailbox: (n) => {
      for (let i = 0; i < n; i++) {
        box[0] = rawIndex;
        vmpk_mailbox_enter_rw();
        if (box[1] !== 0) throw new Error('gate: vmpk_mailbox_enter_rw failed');
        sink += fn();
        box[0] = rawIndex;
        vmpk_mailbox_leave();
        if (box[1] !== 0) throw new Error('gate: vmpk_mailbox_leave failed');
      }
    },
    pku: (n) => {
      for (let i = 0; i < n; i++) sink += keyP.with('rw', fn);
    },
    mprotect: (n) => {
      for (let i = 0; i < n; i++) sink += keyM.with('rw', fn);
    },
  };
  const names = Object.keys(variants);
  // CPU time (getrusage, user + system), not wall time: the machines here are
  // shared, and time spent descheduled would land on whichever batch it hit.
  const time = (name, n) => {
    const t0 = process.cpuUsage();
    variants[name](n);
    const d = process.cpuUsage(t0);
    return ((d.user + d.system) * 1000) / n;
  };

  // Warm up (JIT, the first miss), then size each batch to about BATCH_NS.
  const iters = {};
  for (const name of names) {
    time(name, 1000);
    const per = median([time(name, 2000), time(name, 2000), time(name, 2000)]);
    iters[name] = Math.max(200, Math.round(BATCH_NS / per));
  }

  const before = { pku: pku.stats(), mprotect: mp.stats() };
  const ns = Object.fromEntries(names.map((n) => [n, []]));
  for (let t = 0; t < TRIALS; t++) {
    for (let j = 0; j < names.length; j++) {
      const name = names[(t + j) % names.length];
      ns[name].push(time(name, iters[name]));
    }
  }
  const after = { pku: pku.stats(), mprotect: mp.stats() };
  const per = (which) => {
    const a = before[which];
    const b = after[which];
    const g = b.gates - a.gates;
    return { gates: g, hits: (b.hits - a.hits) / g, syscalls: (b.syscalls - a.syscalls) / g, mprotectCalls: (b.mprotectCalls - a.mprotectCalls) / g, pkruWrites: (b.pkruWrites - a.pkruWrites) / g };
  };
  const counts = { pku: per('pku'), mprotect: per('mprotect') };

  const ratio = (x, y) => ns[x].map((v, i) => v / ns[y][i]);
  const r = {
    withPku: ratio('pku', 'noop'),
    argsPair: ratio('args', 'noop'),
    args32Pair: ratio('args32', 'noop'),
    koffiPair: ratio('koffi', 'noop'),
    core: ratio('koffi', 'args'),
    wrapper: ratio('pku', 'mailbox'),
    mailboxPair: ratio('mailbox', 'noop'),
    withMprotect: ratio('mprotect', 'noop'),
    koffi32Pair: ratio('koffi32', 'noop'),
    core32: ratio('koffi32', 'args32'),
  };
  const met = median(r.withPku) <= TARGET;

  console.log(`machine: ${machine()}; node ${process.version}`);
  console.log(`library: ${library.replace(ROOT, '')}${stubbed ? ' (stub build)' : ''}`);
  if (stubbed) console.log('PKRU stubbed: WRPKRU cost not included (each WRPKRU/RDPKRU is a thread-local store/load,\n  initial-exec TLS: no __tls_get_addr call on the hit path)');
  console.log(`trials: ${TRIALS}, interleaved; per-trial ratios, median (quartiles):`);
  console.log(`  with('rw') pku hit       / noop pair: ${ratioText(r.withPku)}   target <= ${TARGET}x: ${met ? 'MET' : 'NOT MET'}`);
  console.log('  with() calls vmpk_mailbox_enter_rw/vmpk_mailbox_leave, void (void): the key\'s 32-bit gate index and the result in the thread\'s mailbox');
  console.log(`  koffi mailbox pair                    / noop pair: ${ratioText(r.mailboxPair)}   (the C core's share, and the mailbox's)`);
  console.log(`  with('rw') pku hit / koffi mailbox pair: ${ratioText(r.wrapper)}   (the JS API's share)`);
  console.log('  the index as an argument (vmpk_enter_rw/vmpk_leave_index, int (uint32_t)):');
  console.log(`  empty calls, int (uint32_t) x2        / noop pair: ${ratioText(r.args32Pair)}   (koffi's marshalling of the index)`);
  console.log(`  koffi enter_rw+leave_index pair       / noop pair: ${ratioText(r.koffi32Pair)}`);
  console.log(`  koffi enter_rw+leave_index pair       / empty uint32_t calls: ${ratioText(r.core32)}   (the C core's share)`);
  console.log('  by handle, as before the index (vmpk_begin/vmpk_end, uintptr_t + uint64_t):');
  console.log(`  empty calls, gate's args              / noop pair: ${ratioText(r.argsPair)}   (koffi's marshalling of rt and handle)`);
  console.log(`  koffi begin+end pair                  / noop pair: ${ratioText(r.koffiPair)}`);
  console.log(`  koffi begin+end pair                  / empty calls, gate's args: ${ratioText(r.core)}   (the C core's share)`);
  console.log(`  with('rw') mprotect      / noop pair: ${ratioText(r.withMprotect, 1)}`);
  console.log(`counts per gate while timing (vmpk_stats deltas):`);
  console.log(`  pku:      hits ${counts.pku.hits.toFixed(3)}, syscalls ${counts.pku.syscalls.toFixed(3)}, PKRU writes ${counts.pku.pkruWrites.toFixed(3)} (${counts.pku.gates} gates)`);
  console.log(`  mprotect: syscalls ${counts.mprotect.syscalls.toFixed(3)}, mprotect calls ${counts.mprotect.mprotectCalls.toFixed(3)} (${counts.mprotect.gates} gates)`);
  if (!(sink > 0)) throw new Error('gate: fn never ran'); // also keeps fn's result alive

  keyP.destroy();
  keyM.destroy();
  pku.close();
  mp.close();
  vmpk_close(rawRt);
  const q = (xs) => ({ median: median(xs), q1: quantile(xs, 0.25), q3: quantile(xs, 0.75) });
  const result = { stubbed, library, trials: TRIALS, target: TARGET, met, ratios: Object.fromEntries(Object.entries(r).map(([k, v]) => [k, q(v)])), counts };
  saveResult('gate', result);
  return result;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
