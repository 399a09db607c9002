// Emit-and-run cycles: a JIT writes a new small function and calls it once.
// Side by side in one process, each cycle the same bytes and the same call:
//
//   vmpk pku        cache.emit(bytes), then cache.call(offset, sig, ...args):
//                   the emit gate is two PKRU writes, no syscall
//   vmpk mprotect   the same API on the mprotect backend: each emit toggles
//                   the cache R+X -> R+W -> R+X (two mprotect calls)
//   W^X by hand     a plain mmap'd area: mprotect RW, write, mprotect RX
//                   (the pages written only), koffi.call: what a careful JIT
//                   without vmpk does
//   W^X + scan      the same plus the byte scan commit() makes, so the
//                   ratio to vmpk isolates the protection mechanism
//
//   node bench/jit.mjs            counts and CPU-time ratios (npm run bench)
//   node bench/jit.mjs --counts   counts only (the QEMU guest: TCG times mean nothing)
//
// Where the CPU has no PKU the pku side runs the stub build
// (native/build/stub/libvmpk.so: the pku backend's logic with PKRU a
// variable): its counts are exact, it PROTECTS NOTHING, and its times leave
// out WRPKRU. Times are process CPU time per pass of CYCLES cycles, the
// sides in rotating order; ratios per trial, median and quartiles.
import koffi from 'koffi';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, STUB_SO, cpuHasPku, ensureBuilt, heading, machine, median, quantile, ratioText, saveResult } from './lib.mjs';

const TRIALS = 61;
const PAGE = 4096;
const SIGNATURE = 'int64_t (int64_t, int64_t)';
/** Code sizes: a tiny function, and one of 1 KiB. */
const SIZES = [
  { name: '14-byte function', bytes: 14, cycles: 2048, cache: 64 * 1024 },
  { name: '1 KiB function', bytes: 1024, cycles: 256, cache: 1024 * 1024 },
];

/**
 * lea rax, [rdi + rsi]; add rax, imm32; then NOPs, a 3-byte `nop dword
 * [rax]` (0F 1F 00) every 20 bytes so the scan meets 0F bytes as in real
 * code; ret. Returns x + y + imm.
 */
function template(size) {
  const b = new Uint8Array(size).fill(0x90);
  b.set([0x48, 0x8d, 0x04, 0x37, 0x48, 0x05, 0, 0, 0, 0]);
  for (let i = 10; i + 4 <= size; i += 20) b.set([0x0f, 0x1f, 0x00], i);
  b[size - 1] = 0xc3;
  return b;
}

function setImm(code, imm) {
  code[6] = imm & 0xff;
  code[7] = (imm >> 8) & 0xff;
  code[8] = (imm >> 16) & 0xff;
  code[9] = 0; // imm stays below 2^24: no byte of it can complete a WRPKRU
}

/** A vmpk side: cycles through a code cache, reset() before each pass. */
function vmpkSide(open, backend, size) {
  const rt = open({ backend });
  const cache = rt.createCodeCache({ name: `bench-${backend}`, size: size.cache });
  const code = template(size.bytes);
  return {
    label: backend,
    rt,
    prepare: () => cache.reset(),
    pass(n) {
      let sum = 0;
      for (let i = 0; i < n; i++) {
        setImm(code, i);
        const e = cache.emit(code);
        sum += Number(cache.call(e.offset, SIGNATURE, i, 1));
      }
      return sum;
    },
    close: () => rt.close(),
  };
}

/** The same cycles with mprotect W^X toggling by hand, on plain mmap'd memory. */
function byHandSide(size, scan, scanBytes) {
  const libc = koffi.load('libc.so.6');
  const mmap = libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off)');
  const mprotect = libc.func('int mprotect(uintptr_t addr, size_t len, int prot)');
  const munmap = libc.func('int munmap(void *addr, size_t len)');
  const PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20;
  const len = size.cache;
  const base = mmap(null, len, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const addr = koffi.address(base);
  const view = new Uint8Array(koffi.view(base, len));
  const proto = koffi.proto(SIGNATURE);
  const code = template(size.bytes);
  let top = 0;
  let syscalls = 0;
  return {
    label: scan ? 'W^X + scan' : 'W^X by hand',
    get syscalls() {
      return syscalls;
    },
    prepare: () => (top = 0),
    pass(n) {
      let sum = 0;
      for (let i = 0; i < n; i++) {
        setImm(code, i);
        const at = top;
        // Only the pages the write touches, as a careful JIT would.
        const from = Math.floor(at / PAGE) * PAGE;
        const to = Math.ceil((at + code.length) / PAGE) * PAGE;
        const page = addr + BigInt(from);
        if (mprotect(page, to - from, PROT_READ | PROT_WRITE) !== 0) throw new Error('mprotect RW failed');
        view.set(code, at);
        if (scan && scanBytes(view.subarray(Math.max(0, at - 2), at + code.length)).length) throw new Error('unsafe');
        if (mprotect(page, to - from, PROT_READ | PROT_EXEC) !== 0) throw new Error('mprotect RX failed');
        syscalls += 2;
        top = Math.ceil((at + code.length) / 16) * 16;
        sum += Number(koffi.call(addr + BigInt(at), proto, i, 1));
      }
      return sum;
    },
    close: () => munmap(base, len),
  };
}

function cpuTime(fn) {
  const t0 = process.cpuUsage();
  fn();
  const d = process.cpuUsage(t0);
  return d.user + d.system;
}

/** Exact counts per cycle over one pass of a vmpk side. */
function counts(side, n) {
  side.prepare();
  const a = side.rt.stats();
  side.pass(n);
  const b = side.rt.stats();
  const per = (f) => (b[f] - a[f]) / n;
  return { syscalls: per('syscalls'), mprotectCalls: per('mprotectCalls'), pkruWrites: per('pkruWrites'), gates: per('gates') };
}

export async function main(argv = process.argv.slice(2)) {
  const countsOnly = argv.includes('--counts') || !!process.env.VMPK_VM;
  heading('jit: emit-and-run cycles, vmpk code cache against mprotect W^X toggling');
  if (!process.env.VMPK_VM) ensureBuilt({ dist: true });
  if (!process.env.VMPK_LIBRARY && !cpuHasPku()) process.env.VMPK_LIBRARY = STUB_SO;
  const { open, scanBytes } = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href);
  const library = process.env.VMPK_LIBRARY || join(ROOT, 'native', 'build', 'libvmpk.so');
  const probe = open({ backend: 'pku' });
  const stubbed = probe.capabilities.pkruStubbed;
  probe.close();
  const pkuLabel = stubbed ? 'vmpk pku (stub)' : 'vmpk pku';
  console.log(`machine: ${machine()}; node ${process.version}`);
  console.log(`library: ${library.replace(ROOT, '')}; pku side: ${stubbed ? 'stub build: PKRU is a variable, so it PROTECTS NOTHING; exact counts, times without WRPKRU' : 'real build'}`);
  console.log(`command: node bench/jit.mjs${countsOnly ? ' --counts' : ''}`);

  const result = { stubbed, library, sizes: {} };
  for (const size of SIZES) {
    const pku = vmpkSide(open, 'pku', size);
    const mp = vmpkSide(open, 'mprotect', size);
    const c = { pku: counts(pku, size.cycles), mprotect: counts(mp, size.cycles) };
    console.log(`${size.name}, ${size.cycles} cycles per pass (an emit and one call each):`);
    console.log('  per cycle                 syscalls  mprotect  PKRU writes  gates');
    const f = (v, w) => v.toFixed(3).padStart(w);
    console.log(`  ${pkuLabel.padEnd(24)}${f(c.pku.syscalls, 9)} ${f(c.pku.mprotectCalls, 9)} ${f(c.pku.pkruWrites, 12)} ${f(c.pku.gates, 6)}`);
    console.log(`  ${'vmpk mprotect'.padEnd(24)}${f(c.mprotect.syscalls, 9)} ${f(c.mprotect.mprotectCalls, 9)} ${f(c.mprotect.pkruWrites, 12)} ${f(c.mprotect.gates, 6)}`);
    const r = { cycles: size.cycles, bytes: size.bytes, counts: c };
    if (!countsOnly) {
      const hand = byHandSide(size, false, scanBytes);
      const handScan = byHandSide(size, true, scanBytes);
      hand.prepare();
      hand.pass(size.cycles);
      console.log(`  ${'W^X by hand'.padEnd(24)}${f(hand.syscalls / size.cycles, 9)} ${f(hand.syscalls / size.cycles, 9)} ${f(0, 12)} ${f(0, 6)}`);
      const sides = [pku, mp, hand, handScan];
      const times = new Map(sides.map((s) => [s, []]));
      const expected = size.cycles * size.cycles; // the sum of i + 1 + i
      for (const s of sides) s.prepare(), s.pass(size.cycles); // warm-up: V8 compiles the loops
      for (let t = 0; t < TRIALS; t++) {
        for (let k = 0; k < sides.length; k++) {
          const s = sides[(t + k) % sides.length];
          s.prepare();
          let sum = 0;
          times.get(s).push(cpuTime(() => (sum = s.pass(size.cycles))));
          if (sum !== expected) throw new Error(`${s.label}: the code returned ${sum}, expected ${expected}`);
        }
      }
      const ratio = (a, b) => times.get(a).map((x, i) => x / times.get(b)[i]);
      const rows = [
        ['W^X by hand / vmpk pku' + (stubbed ? ' (stub)' : ''), ratio(hand, pku)],
        ['W^X + scan / vmpk pku' + (stubbed ? ' (stub)' : ''), ratio(handScan, pku)],
        ['vmpk mprotect / vmpk pku' + (stubbed ? ' (stub)' : ''), ratio(mp, pku)],
        ['vmpk mprotect / W^X + scan', ratio(mp, handScan)],
      ];
      r.ratios = {};
      for (const [name, xs] of rows) {
        console.log(`  CPU time, ${name}: ${ratioText(xs)}`);
        r.ratios[name] = { median: median(xs), q1: quantile(xs, 0.25), q3: quantile(xs, 0.75), trials: TRIALS };
      }
      const us = (s) => median(times.get(s)) / size.cycles;
      r.usPerCycle = { pku: us(pku), mprotect: us(mp), byHand: us(hand), byHandScan: us(handScan) };
      console.log(`  (for scale only, medians per cycle: ${pkuLabel} ${us(pku).toFixed(2)} us, vmpk mprotect ${us(mp).toFixed(2)} us, W^X by hand ${us(hand).toFixed(2)} us, W^X + scan ${us(handScan).toFixed(2)} us)`);
      hand.close();
      handScan.close();
    }
    pku.close();
    mp.close();
    result.sizes[size.name] = r;
  }
  saveResult(stubbed ? 'jit-stub' : cpuHasPku() ? 'jit-real' : 'jit', result);
  return result;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
