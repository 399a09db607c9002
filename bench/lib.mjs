// Helpers shared by the benchmark scripts: paths, builds, the machine, and
// the statistics (medians of interleaved trials). See docs/benchmarks.md.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const BUILD = join(ROOT, 'bench', 'build');
export const STUB_SO = join(ROOT, 'native', 'build', 'stub', 'libvmpk.so');
export const RELEASE_SO = join(ROOT, 'native', 'build', 'libvmpk.so');

/** Runs a command in the repository root; throws with its output on failure. */
export function sh(cmd, args, options = {}) {
  return execFileSync(cmd, args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...options });
}

export function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Builds what the benchmarks need, incrementally: the core (release and
 * stub, shared libraries and archives), bench/build/*, and dist/ when a
 * file in src/ is newer than its output.
 */
export function ensureBuilt({ dist = false } = {}) {
  sh('make', ['-s', '-C', 'native', 'lib', 'stub']);
  sh('make', ['-s', '-C', 'bench']);
  if (dist && distIsStale()) {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    sh(process.execPath, [tsc, '-p', 'tsconfig.json']);
  }
}

function distIsStale() {
  for (const f of readdirSync(join(ROOT, 'src'))) {
    if (!f.endsWith('.ts')) continue;
    const out = join(ROOT, 'dist', f.replace(/\.ts$/, '.js'));
    if (!existsSync(out) || statSync(out).mtimeMs < statSync(join(ROOT, 'src', f)).mtimeMs) return true;
  }
  return false;
}

/** True where the CPU and kernel advertise protection keys. */
export function cpuHasPku() {
  try {
    const flags = readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '';
    return / pku( |$)/.test(flags) && / ospke( |$)/.test(flags);
  } catch {
    return false;
  }
}

/** `lscpu` model name, with whether PKU is there. */
export function machine() {
  let model = 'unknown CPU';
  try {
    model = sh('lscpu', []).match(/^Model name:\s*(.+)$/m)?.[1]?.trim() ?? model;
  } catch {
    /* no lscpu */
  }
  return `${model}, ${cpuHasPku() ? 'PKU present' : 'no PKU'}${process.env.VMPK_VM ? ' (QEMU TCG guest)' : ''}`;
}

/** The last commit that changed native/, and whether native/ differs from it. */
export function coreVersion() {
  try {
    const commit = sh('git', ['log', '-1', '--format=%h', '--', 'native']).trim();
    const dirty = sh('git', ['status', '--porcelain', '--', 'native/src', 'native/include']).trim() !== '';
    return `${commit}${dirty ? ' with uncommitted changes in native/' : ''}`;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

/** `key=value key=value` → object; numbers where they parse. */
export function parseKV(line) {
  const o = {};
  for (const [, k, v] of line.matchAll(/(\w+)=(\S+)/g)) o[k] = /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
  return o;
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The q-quantile by linear interpolation. */
export function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  const at = (s.length - 1) * q;
  const lo = Math.floor(at);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (at - lo);
}

/** "1.84x (quartiles 1.80-1.90, n=31)". */
export function ratioText(xs, digits = 2) {
  return `${median(xs).toFixed(digits)}x (quartiles ${quantile(xs, 0.25).toFixed(digits)}-${quantile(xs, 0.75).toFixed(digits)}, n=${xs.length})`;
}

/** mulberry32: a small PRNG with a fixed seed, so sequences repeat exactly. */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Saves a script's results as JSON for bench/run.mjs's summary: under
 * $VMPK_BENCH_OUT when set (the guest writes there), else bench/build/results.
 */
export function saveResult(name, result) {
  const dir = process.env.VMPK_BENCH_OUT || join(BUILD, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${name}.json`), JSON.stringify(result, null, 2) + '\n');
}

export function heading(title) {
  console.log(`\n== ${title} ==`);
}

/** Thousands separators, as callgrind prints them. */
export function num(n) {
  return n.toLocaleString('en-US');
}

/**
 * VMAs of this process: lines of /proc/self/maps, all of them, or only those
 * that overlap the address range [from, to) (bigints).
 */
export function vmaCount(from, to) {
  const lines = readFileSync('/proc/self/maps', 'utf8').split('\n');
  let n = 0;
  for (const line of lines) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (!m) continue;
    if (from === undefined || (BigInt(`0x${m[1]}`) < to && BigInt(`0x${m[2]}`) > from)) n++;
  }
  return n;
}
