// Which libvmpk.so a process loads (native.ts loads it). In order:
//   1. $VMPK_LIBRARY, as given;
//   2. native/build/libvmpk.so, a build from source (a checkout, `npx vmpk
//      build`; VMPK_BUILD_FROM_SOURCE=1 builds it at the first load instead
//      of taking a prebuilt one);
//   3. prebuilds/<platform>/libvmpk.so, shipped in the package, where the
//      platform and the C library fit (no compiler needed, no install script);
//   4. none fits: built from source now (make), with one line on stderr.
// The package has no install script on purpose: npm 11 and pnpm 10 ask users
// to approve those, and hide their output. See docs/troubleshooting.md.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { VmpkError } from './errors.js';

/** What a prebuilt library was built for (prebuilds/<platform>/build.json, written by scripts/prebuild.mjs). */
export interface PrebuildInfo {
  platform: string;
  /** The newest GLIBC_x.y symbol version it needs. */
  glibc: string;
  commit: string;
  compiler: string;
  date: string;
}

export interface LibraryChoice {
  path: string;
  /** env: $VMPK_LIBRARY; source: native/build; prebuilt: prebuilds/; built: built from source by this call. */
  source: 'env' | 'source' | 'prebuilt' | 'built';
  /** This machine's platform tag, as prebuilds/ names them: linux-x64-glibc. */
  platform: string;
  /** Why this one, in words. */
  why: string;
  prebuild?: PrebuildInfo;
}

/** The package root: this file is src/library.ts or dist/library.js. */
export const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));
const SOURCE_BUILD = fileURLToPath(new URL('../native/build/libvmpk.so', import.meta.url));
const PREBUILDS = fileURLToPath(new URL('../prebuilds/', import.meta.url));
/** What a user runs to build the library from source in a project that depends on vmpk. */
export const BUILD_COMMAND = 'npx vmpk build';

let glibcCache: string | null | undefined;
/** The running glibc's version ('2.36'), or null (musl, or not Linux). */
export function glibcVersion(): string | null {
  if (glibcCache === undefined) {
    let v: unknown;
    try {
      // The report's header has it; network details are not needed.
      if (process.report) (process.report as { excludeNetwork?: boolean }).excludeNetwork = true;
      v = (process.report?.getReport() as { header?: { glibcVersionRuntime?: unknown } } | undefined)?.header?.glibcVersionRuntime;
    } catch {
      v = undefined;
    }
    glibcCache = typeof v === 'string' ? v : null;
  }
  return glibcCache;
}

/** linux-x64-glibc, linux-arm64-glibc, linux-x64-musl, darwin-arm64, ... */
export function platformTag(): string {
  const base = `${process.platform}-${process.arch}`;
  if (process.platform !== 'linux') return base;
  return `${base}-${glibcVersion() !== null ? 'glibc' : 'musl'}`;
}

function versionAtLeast(have: string, need: string): boolean {
  const a = have.split('.').map(Number);
  const b = need.split('.').map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return true;
}

/** The prebuilds in this package: platform tag -> its build.json. */
export function prebuilds(): Map<string, PrebuildInfo> {
  const found = new Map<string, PrebuildInfo>();
  for (const platform of ['linux-x64-glibc', 'linux-arm64-glibc']) {
    const dir = `${PREBUILDS}${platform}/`;
    if (!existsSync(`${dir}libvmpk.so`)) continue;
    try {
      found.set(platform, JSON.parse(readFileSync(`${dir}build.json`, 'utf8')) as PrebuildInfo);
    } catch {
      found.set(platform, { platform, glibc: '0', commit: 'unknown', compiler: 'unknown', date: 'unknown' });
    }
  }
  return found;
}

/**
 * Builds native/build/libvmpk.so from the shipped C sources with make
 * (incremental). `log` gets make's output (stderr by default). Throws
 * LIBRARY_LOAD_FAILED naming the platform and what to install.
 */
export function buildFromSource(stdio: 'inherit' | 'pipe' = 'pipe'): string {
  const native = fileURLToPath(new URL('../native/', import.meta.url));
  if (!existsSync(`${native}Makefile`)) {
    throw new VmpkError('LIBRARY_LOAD_FAILED', `vmpk: cannot build the native library for ${platformTag()}: the C sources are not in ${native}`);
  }
  try {
    execFileSync('make', ['-s', '-C', native, 'lib'], { stdio: stdio === 'inherit' ? 'inherit' : ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { code?: string; stderr?: Buffer; message: string };
    const detail =
      e.code === 'ENOENT'
        ? 'make is not installed'
        : (e.stderr?.toString().trim().split('\n').slice(-3).join(' | ') || e.message);
    throw new VmpkError(
      'LIBRARY_LOAD_FAILED',
      `vmpk: building the native library from source failed on ${platformTag()} (${detail}); ` +
        `install make and a C compiler (Debian/Ubuntu: apt-get install build-essential), then run \`${BUILD_COMMAND}\` in your project, ` +
        'or set VMPK_LIBRARY to a libvmpk.so built elsewhere',
    );
  }
  return SOURCE_BUILD;
}

/** Picks the library to load (see the top of this file); may build one. */
export function chooseLibrary(): LibraryChoice {
  const env = process.env['VMPK_LIBRARY'];
  if (env !== undefined && env !== '') return { path: env, source: 'env', platform: platformTag(), why: 'VMPK_LIBRARY is set' };
  const platform = platformTag();
  const fromSource = process.env['VMPK_BUILD_FROM_SOURCE'] === '1';
  if (existsSync(SOURCE_BUILD)) {
    return { path: SOURCE_BUILD, source: 'source', platform, why: 'a build from source exists (native/build/)' };
  }
  const all = prebuilds();
  const prebuild = all.get(platform);
  let missing: string;
  if (fromSource) missing = 'VMPK_BUILD_FROM_SOURCE=1';
  else if (prebuild === undefined) {
    missing = `no prebuilt library for ${platform} (this package has: ${[...all.keys()].join(', ') || 'none'})`;
  } else if (!versionAtLeast(glibcVersion() ?? '0', prebuild.glibc)) {
    missing = `the prebuilt library for ${platform} needs glibc ${prebuild.glibc}, this system has ${glibcVersion()}`;
  } else {
    return { path: `${PREBUILDS}${platform}/libvmpk.so`, source: 'prebuilt', platform, why: `the prebuilt library for ${platform} fits`, prebuild };
  }
  const path = buildFromSource();
  process.stderr.write(`vmpk: ${missing}: built ${path} from source\n`);
  return { path, source: 'built', platform, why: `${missing}: built from source` };
}
