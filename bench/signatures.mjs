// What a koffi call costs by signature: empty C functions in
// bench/build/libnoop.so, each relative to `void noop(void)`, as CPU-time
// ratios per interleaved trial (median, quartiles). It says how much of the
// gate's budget (issue 3: with() at most 2.5x a bare void pair) the argument
// types of vmpk_begin/vmpk_end spend before the core runs at all.
//
//   node bench/signatures.mjs
import koffi from 'koffi';
import { join } from 'node:path';
import { BUILD, ensureBuilt, heading, median, quantile, ratioText, saveResult } from './lib.mjs';

const TRIALS = 41;
const BATCH_NS = 2e6;

export function main() {
  heading('signatures: one koffi call by argument types, relative to void noop(void)');
  ensureBuilt();
  const lib = koffi.load(join(BUILD, 'libnoop.so'));
  const RT = 0x7f12_3456_7000; // a user-space address, as a runtime pointer travels
  const KEY = 2 ** 45 + 2 ** 24 + 1; // a handle with runtime id 1, generation 1, slot 0
  const calls = {
    'void noop(void)': [lib.func('noop', 'void', []), (f, n) => { for (let i = 0; i < n; i++) f(); }],
    'int (void)': [lib.func('sig_r', 'int', []), (f, n) => { for (let i = 0; i < n; i++) f(); }],
    'int (int)': [lib.func('sig_i1', 'int', ['int']), (f, n) => { for (let i = 0; i < n; i++) f(3); }],
    'int (int, int)': [lib.func('sig_i2', 'int', ['int', 'int']), (f, n) => { for (let i = 0; i < n; i++) f(7, 3); }],
    'int (int, int, int)': [lib.func('sig_i3', 'int', ['int', 'int', 'int']), (f, n) => { for (let i = 0; i < n; i++) f(1, 7, 3); }],
    'int (uint64_t)': [lib.func('sig_u64', 'int', ['uint64_t']), (f, n) => { for (let i = 0; i < n; i++) f(KEY); }],
    'int (uintptr_t)': [lib.func('sig_uptr', 'int', ['uintptr_t']), (f, n) => { for (let i = 0; i < n; i++) f(RT); }],
    'vmpk_end:   int (uintptr_t, uint64_t)': [lib.func('noop_end', 'int', ['uintptr_t', 'uint64_t']), (f, n) => { for (let i = 0; i < n; i++) f(RT, KEY); }],
    'vmpk_begin: int (uintptr_t, uint64_t, int)': [lib.func('noop_begin', 'int', ['uintptr_t', 'uint64_t', 'int']), (f, n) => { for (let i = 0; i < n; i++) f(RT, KEY, 3); }],
  };
  const names = Object.keys(calls);
  const time = (name, n) => {
    const [f, loop] = calls[name];
    const t0 = process.cpuUsage();
    loop(f, n);
    const d = process.cpuUsage(t0);
    return ((d.user + d.system) * 1000) / n;
  };
  const iters = {};
  for (const name of names) {
    time(name, 10000);
    iters[name] = Math.max(1000, Math.round(BATCH_NS / median([time(name, 20000), time(name, 20000), time(name, 20000)])));
  }
  const ns = Object.fromEntries(names.map((n) => [n, []]));
  for (let t = 0; t < TRIALS; t++) {
    for (let j = 0; j < names.length; j++) {
      const name = names[(t + j) % names.length];
      ns[name].push(time(name, iters[name]));
    }
  }
  const base = names[0];
  const result = {};
  console.log(`trials: ${TRIALS}, interleaved; per call, relative to ${base}:`);
  for (const name of names.slice(1)) {
    const r = ns[name].map((v, i) => v / ns[base][i]);
    result[name] = { median: median(r), q1: quantile(r, 0.25), q3: quantile(r, 0.75) };
    console.log(`  ${name.padEnd(44)} ${ratioText(r)}`);
  }
  saveResult('signatures', result);
  return result;
}

if (import.meta.url === `file://${process.argv[1]}`) main();
