#!/usr/bin/env node
// Puts a stripped libvmpk.so and its build.json into prebuilds/<platform>/,
// where src/library.ts looks for it at load time (npm pack runs this through
// "prepack"; prebuilds/ is not committed).
//
//   node scripts/prebuild.mjs                          # this machine's build (make -C native lib)
//   node scripts/prebuild.mjs --arch arm64             # cross-built here (Debian's gcc-aarch64-linux-gnu)
//   node scripts/prebuild.mjs --arch arm64 --from F    # a library built elsewhere (cross or qemu)
//
// Environment: STRIP (default: strip, or <arch>-linux-gnu-strip for --arch).
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const hostArch = process.arch;
const arch = opt('--arch') ?? hostArch;
const gnu = { x64: 'x86_64', arm64: 'aarch64' }[arch];
if (!gnu) throw new Error(`prebuild: no prebuilt libraries for ${arch}`);
let from = opt('--from');
let cc = process.env.CC ?? 'cc';
if (from === undefined && arch === hostArch) {
  execFileSync('make', ['-s', '-C', join(root, 'native'), 'lib'], { stdio: 'inherit' });
  from = join(root, 'native', 'build', 'release', 'libvmpk.so');
} else if (from === undefined) {
  // Every platform CI tests ships prebuilt: a missing cross compiler is an
  // error, not a package without that platform.
  cc = process.env.CROSS_CC ?? `${gnu}-linux-gnu-gcc`;
  try {
    execFileSync(cc, ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error(`prebuild: --arch ${arch} needs ${cc} (apt-get install gcc-${gnu}-linux-gnu), or --from FILE`);
  }
  const out = `build/${gnu}`;
  execFileSync('make', ['-s', '-C', join(root, 'native'), `OUT=${out}`, `CC=${cc}`, `ARCH=${gnu}`, `${out}/release/libvmpk.so`], { stdio: 'inherit' });
  from = join(root, 'native', out, 'release', 'libvmpk.so');
}
const platform = `linux-${arch}-glibc`;
const dir = join(root, 'prebuilds', platform);
mkdirSync(dir, { recursive: true });
const out = join(dir, 'libvmpk.so');
copyFileSync(from, `${out}.tmp`);
const strip = process.env.STRIP ?? (arch === hostArch ? 'strip' : `${gnu}-linux-gnu-strip`);
execFileSync(strip, ['--strip-unneeded', `${out}.tmp`]);
execFileSync('mv', [`${out}.tmp`, out]);

// The newest GLIBC_x.y version the library's dynamic symbols need: load-time
// selection refuses a prebuilt library on an older glibc.
const dyn = execFileSync('readelf', ['--dyn-syms', '-W', out], { encoding: 'utf8' });
const versions = [...dyn.matchAll(/@GLIBC_(\d+(?:\.\d+)+)/g)].map((m) => m[1]);
const newer = (a, b) => {
  const x = a.split('.').map(Number), y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
  return false;
};
const glibc = versions.reduce((a, b) => (newer(b, a) ? b : a), '2.2.5');
const git = (...a) => {
  try {
    return execFileSync('git', a, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
};
const dirty = git('status', '--porcelain', '--', 'native') ? '+dirty' : '';
const compiler = (() => {
  try {
    return execFileSync(cc, ['--version'], { encoding: 'utf8' }).split('\n')[0];
  } catch {
    return 'unknown';
  }
})();
const info = {
  platform,
  glibc,
  commit: git('rev-parse', '--short=12', 'HEAD') + dirty,
  compiler: opt('--from') === undefined ? compiler : `see ${from}`,
  date: new Date().toISOString().slice(0, 10),
  bytes: statSync(out).size,
};
writeFileSync(join(dir, 'build.json'), JSON.stringify(info, null, 2) + '\n');
console.log(`prebuild: ${out} (${info.bytes} bytes, stripped, needs glibc ${glibc}, ${info.commit})`);
