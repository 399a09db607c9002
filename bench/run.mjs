// npm run bench: every benchmark of docs/benchmarks.md, each in a fresh
// process, then a summary against the targets of issues 3, 4 and 6.
//
//   node bench/run.mjs        on this machine (the pku side on the stub build
//                             where the CPU has no PKU); about 3 minutes
//   node bench/run.mjs --vm   the real build's counts in the QEMU guest
//                             (npm run vm): miss.mjs --real, backends.mjs --counts,
//                             threads-shootdown.mjs --counts, regions.mjs --counts
//                             (up to 100,000 vkeys) and jit.mjs --counts
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BUILD, ROOT, coreVersion, ensureBuilt, heading, machine } from './lib.mjs';

const vm = process.argv.includes('--vm');
const out = join(BUILD, vm ? 'vm' : 'results');
const started = Date.now();

function read(name) {
  const f = join(out, `${name}.json`);
  return existsSync(f) ? JSON.parse(readFileSync(f, 'utf8')) : undefined;
}

function run(cmd, args, env = {}) {
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.status !== 0) console.log(`bench: ${cmd} ${args.join(' ')} exited with status ${r.status ?? r.signal}`);
  return r.status === 0;
}

console.log(`vmpk benchmarks, ${new Date().toISOString().slice(0, 10)}: ${machine()}, node ${process.version}`);
console.log(`core: native/ at ${coreVersion()}. Ratios are measured side by side in one process; counts are exact. See docs/benchmarks.md.`);
ensureBuilt({ dist: true });
rmSync(out, { recursive: true, force: true });

const ok = [];
if (vm) {
  console.log('\nIn the QEMU TCG guest (npm run vm): the real build, counts only (TCG makes times meaningless).');
  ok.push(run('npm', ['run', '-s', 'vm', '--', 'sh', '-c', 'node bench/miss.mjs --real && node bench/backends.mjs --counts && node bench/threads-shootdown.mjs --counts && node bench/regions.mjs --max 100000 --gates 20000 --counts && node bench/jit.mjs --counts'], { VMPK_VM_OUT: out, VMPK_BENCH_OUT: out }));
} else {
  for (const script of ['hitpath.mjs', 'miss.mjs', 'gate.mjs', 'signatures.mjs', 'backends.mjs', 'threads-async.mjs', 'threads-shootdown.mjs', 'regions.mjs', 'jit.mjs']) {
    ok.push(run(process.execPath, [join('bench', script)], { VMPK_BENCH_OUT: out }));
  }
}

heading('summary: the targets of issue 3');
const verdict = (met) => (met === undefined ? 'not measured' : met ? 'MET' : 'NOT MET');
const gate = read('gate');
if (gate) {
  console.log(`  key.with('rw') on a hit / bare koffi void pair: ${gate.ratios.withPku.median.toFixed(2)}x, target <= ${gate.target}x: ${verdict(gate.met)}${gate.stubbed ? ' (stub build: WRPKRU not included)' : ''}`);
  console.log(`    of which koffi's marshalling of the gate's arguments alone: ${gate.ratios.argsPair.median.toFixed(2)}x`);
}
const hit = read('hitpath');
if (hit && !hit.skipped) {
  console.log(`  vmpk_begin + vmpk_end hit, instructions per pair besides the WRPKRUs: ${hit.besidesWrpkru.toFixed(0)}, target <= ${hit.target}: ${verdict(hit.met)} (stub build, callgrind)`);
}
for (const name of ['miss-stub', 'miss-real']) {
  const m = read(name);
  if (!m || m.skipped) continue;
  const per = m.rows.map((r) => `${r.case} ${(r.syscalls / r.misses).toFixed(2)}`).join(', ');
  console.log(`  syscalls per miss (${m.build} build): ${per}; target <= ${m.target}: ${verdict(m.met)}${m.strace === undefined ? '' : `; strace saw ${m.strace.all.toFixed(2)}`}`);
}
for (const name of ['backends-stub', 'backends-real', 'backends']) {
  const b = read(name);
  if (!b) continue;
  for (const [seq, r] of Object.entries(b.sequences)) {
    const t = r.mprotectOverPku ? `; CPU time mprotect/pku ${r.mprotectOverPku.median.toFixed(2)}x` : '';
    console.log(`  ${seq} (${b.stubbed ? 'pku stub' : 'pku real'}): syscalls per gate pku ${r.counts.pku.syscalls.toFixed(3)}, mprotect ${r.counts.mprotect.syscalls.toFixed(3)}${t}`);
  }
}

heading('summary: threads (issue 4)');
const asyncGate = read('threads-async');
if (asyncGate) {
  for (const [backend, r] of Object.entries(asyncGate.backends)) {
    const label = backend === 'pku' && asyncGate.stubbed ? 'pku stub' : backend;
    console.log(`  await key.withAsync('rw', fn) / key.with('rw', fn), ${label}: ${r.ratios.withAsyncOverWith.median.toFixed(2)}x; with one await (two pieces): ${r.ratios.withAsync1OverWith.median.toFixed(2)}x`);
  }
  console.log(`  another task's await while an async gate runs (hooks on) / none: ${asyncGate.hookTax.median.toFixed(2)}x`);
}
for (const name of ['threads-shootdown', 'threads-shootdown-counts', 'threads-shootdown-counts-stub']) {
  const t = read(name);
  if (!t) continue;
  const rows = t.rows.map((r) => `${r.threads} threads: ${r.pinned.signalsPerShootdown.toFixed(0)} signals${t.countsOnly ? '' : `, ${r.pinned.us.median.toFixed(0)} us`}`).join('; ');
  console.log(`  protect() narrowing a pinned key (${t.stubbed ? 'pku stub' : 'pku real'}), ${t.rows[0].pinned.shootdownsPerProtect.toFixed(0)} shootdown each: ${rows}`);
}

heading('summary: many isolated regions (issue 6)');
for (const name of ['regions-stub', 'regions-real', 'regions']) {
  const r = read(name);
  if (!r) continue;
  const top = Math.max(...r.rows.map((x) => x.vkeys));
  for (const row of r.rows.filter((x) => x.vkeys === top)) {
    const b = row.backend === 'pku' ? (r.stubbed ? 'pku stub' : 'pku real') : row.backend;
    const rate = row.createRate === undefined ? '' : `created ${Math.round(row.createRate).toLocaleString('en-US')}/s with createKeys() (target >= 500,000/s: ${verdict(row.createRate >= 500000)}), ${Math.round(row.createRateOneByOne).toLocaleString('en-US')}/s one by one; `;
    const vmas = Math.max(row.vmasAfterCreate, ...Object.values(row.orders).map((o) => o.vmasAfterGates));
    const arena = Math.max(row.arenaVmasAfterCreate, ...Object.values(row.orders).map((o) => o.arenaVmasAfterGates));
    console.log(`  ${top.toLocaleString('en-US')} vkeys, ${b}: ${rate}${row.metadataBytesPerVkey.toFixed(1)} metadata bytes per vkey (target <= 64: ${verdict(row.metadataBytesPerVkey <= 64)}); VMAs: at most ${arena} in vmpk's arena, ${vmas} in the process (target: hundreds: ${verdict(vmas < 1000)})`);
    for (const [order, o] of Object.entries(row.orders)) {
      const t = o.relativeThroughput ? `, throughput ${(100 * o.relativeThroughput.median).toFixed(1)}% of plain ArrayBuffers` : '';
      console.log(`    ${order}: hit rate ${o.hitRate.toFixed(3)}, ${o.evictions.toFixed(3)} evictions and ${o.syscalls.toFixed(3)} syscalls per gate${t}`);
    }
  }
}
heading('summary: the JIT code cache (issue 6)');
for (const name of ['jit', 'jit-stub', 'jit-real']) {
  const j = read(name);
  if (!j) continue;
  const label = j.stubbed ? 'pku stub, protects nothing' : 'pku real';
  for (const [size, r] of Object.entries(j.sizes)) {
    const c = r.counts;
    const times = r.ratios ? `; CPU time W^X by hand / vmpk pku ${r.ratios[Object.keys(r.ratios)[0]].median.toFixed(2)}x, vmpk mprotect / W^X + scan ${r.ratios['vmpk mprotect / W^X + scan'].median.toFixed(2)}x` : '';
    console.log(`  ${size}, per emit-and-run cycle: syscalls vmpk pku (${label}) ${c.pku.syscalls.toFixed(3)}, PKRU writes ${c.pku.pkruWrites.toFixed(3)}; syscalls vmpk mprotect ${c.mprotect.syscalls.toFixed(3)}${times}`);
  }
}
if (!vm) console.log('  real build (PKU): npm run bench:vm runs the miss, backend, shootdown, regions and jit counts in the QEMU guest');
console.log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s${ok.every(Boolean) ? '' : ', with failures (see above)'}`);
process.exitCode = ok.every(Boolean) ? 0 : 1;
