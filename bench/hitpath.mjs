// The C gate hit path in instructions: vmpk_begin + vmpk_end on a resident
// key, counted by callgrind for N = 1000 and N = 2000 pairs; the difference
// over 1000 is the cost of one pair, start-up and teardown cancelled out.
//
//   node bench/hitpath.mjs
//
// valgrind cannot execute WRPKRU, so bench/build/hitpath links the stub build
// (native/build/stub/libvmpk.a): each RDPKRU/WRPKRU is a thread-local load or
// store there. Counts are exact and repeat run after run.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUILD, ensureBuilt, have, heading, num, saveResult, sh } from './lib.mjs';

const TARGET = 60; // instructions per pair besides the two WRPKRUs (issue 3)
const N1 = 1000;
const N2 = 2000;

/** Runs hitpath under callgrind; returns the out file and the total. */
function count(n) {
  const out = join(BUILD, `callgrind.hitpath.${n}`);
  sh('valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}`, join(BUILD, 'hitpath'), String(n)]);
  const total = readFileSync(out, 'utf8').match(/^(?:summary|totals):\s*(\d+)/m);
  if (!total) throw new Error(`hitpath: no total in ${out}`);
  return { out, total: Number(total[1]) };
}

/**
 * Self cost per "file:function" (inlined code keeps its own file) and the
 * cost of the stub's PKRU lines in native/src/platform/x86_64/cpu.h, from callgrind_annotate.
 */
function annotate(out) {
  const text = sh('callgrind_annotate', ['--threshold=100', '--auto=yes', '--context=0', out]);
  const fns = new Map();
  for (const m of text.matchAll(/^\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S+:[\w.]+)(?: \[.*\])?$/gm)) {
    fns.set(m[2], (fns.get(m[2]) ?? 0) + Number(m[1].replaceAll(',', '')));
  }
  const stub = { rdpkru: 0, wrpkru: 0 };
  for (const m of text.matchAll(/^\s*([\d,]+) \(\s*[\d.]+%\)\s+static inline \w+ (rdpkru|wrpkru)\(.*vmpk__stub_pkru/gm)) {
    stub[m[2]] += Number(m[1].replaceAll(',', ''));
  }
  // The checked writes (x86_64/cpu.h) store the stub variable inline.
  for (const m of text.matchAll(/^\s*([\d,]+) \(\s*[\d.]+%\)\s+vmpk__stub_pkru = /gm)) {
    stub.wrpkru += Number(m[1].replaceAll(',', ''));
  }
  return { fns, stub };
}

export function main() {
  heading('hitpath: vmpk_begin + vmpk_end on a cache hit, in instructions (callgrind)');
  ensureBuilt();
  if (!have('valgrind')) {
    console.log('skipped: valgrind is not installed (apt-get install valgrind)');
    return { skipped: 'no valgrind' };
  }
  const a = count(N1);
  const b = count(N2);
  const n = N2 - N1;
  const perPair = (b.total - a.total) / n;
  const A = annotate(a.out);
  const B = annotate(b.out);
  const per = (k, x = B.fns, y = A.fns) => ((x.get(k) ?? 0) - (y.get(k) ?? 0)) / n;
  const rows = [...new Set([...A.fns.keys(), ...B.fns.keys()])]
    .map((k) => [k, per(k)])
    .filter(([, c]) => c !== 0)
    .sort((x, y) => y[1] - x[1]);
  const loop = rows.filter(([k]) => k.endsWith(':main')).reduce((s, [, c]) => s + c, 0);
  const wr = (B.stub.wrpkru - A.stub.wrpkru) / n;
  const rd = (B.stub.rdpkru - A.stub.rdpkru) / n;
  const vmpk = perPair - loop;
  const besidesWrpkru = vmpk - wr;
  const met = besidesWrpkru <= TARGET;

  console.log('build: stub (native/build/stub/libvmpk.a, linked statically, -O2): PKRU is a thread-local');
  console.log('       variable, so each WRPKRU/RDPKRU is a TLS store/load; pkey syscalls are simulated');
  console.log(`command: valgrind --tool=callgrind bench/build/hitpath N, for N=${N1} and N=${N2}`);
  console.log(`totals: N=${N1}: ${num(a.total)} instructions, N=${N2}: ${num(b.total)}`);
  console.log(`per begin+end pair: ${perPair.toFixed(2)} instructions, of which`);
  console.log(`  ${loop.toFixed(2)} the benchmark's own loop and call setup (hitpath.c main)`);
  console.log(`  ${vmpk.toFixed(2)} vmpk_begin + vmpk_end and everything they call`);
  console.log(`  ${wr.toFixed(2)} the WRPKRU stand-ins (TLS stores: 5 per pair with the metadata switches), ${rd.toFixed(2)} the RDPKRU stand-ins (TLS loads)`);
  console.log(`vmpk besides the WRPKRUs: ${besidesWrpkru.toFixed(2)} instructions per pair; target <= ${TARGET}: ${met ? 'MET' : 'NOT MET'}`);
  console.log('per function, self cost per pair (inlined code is listed under its own file):');
  for (const [k, c] of rows) console.log(`  ${c.toFixed(2).padStart(8)}  ${k.replace(/^.*\/(native|bench)\//, '$1/')}`);
  const result = { perPair, loop, vmpk, wrpkru: wr, rdpkru: rd, besidesWrpkru, target: TARGET, met, totals: { [N1]: a.total, [N2]: b.total }, functions: Object.fromEntries(rows) };
  saveResult('hitpath', result);
  return result;
}

if (import.meta.url === `file://${process.argv[1]}`) main();
