// `vmpk doctor`: what vmpk would do on this machine and why, for a user's bug
// report or a deployment check. Every probe that could change the process for
// good (hardened mode's seccomp filter) runs in a child process.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { release } from 'node:os';
import { fileURLToPath } from 'node:url';
import { type LibraryChoice, platformTag } from './library.js';
import { getNative, libraryChoice } from './native.js';
import { open } from './open.js';

/** 0: the pku backend works; 3: only the mprotect backend (no per-thread isolation); 1: vmpk cannot open a runtime. */
export type DoctorStatus = 0 | 1 | 3;

export interface DoctorReport {
  verdict: string;
  status: DoctorStatus;
  node: { version: string; v8: string; execPath: string };
  platform: string;
  kernel: string;
  cpu: { pku: boolean; ospke: boolean };
  library: { path: string; source: LibraryChoice['source'] | 'given'; why: string; build: unknown } | { error: string };
  backend: { choice: 'pku' | 'mprotect' | null; why: string; opened: boolean; error?: string };
  pkeys: { vmpkCanHold: number | null; metadataKey: number; heldByOthers: number | null; note: string };
  seccomp: { mode: number | null; filters: number | null; hardenedWouldStart: boolean | null; detail: string };
  maxMapCount: { limit: number | null; mapsNow: number };
  ioUring: { kernelSetting: number | null; libuvRing: boolean; detail: string };
  warnings: string[];
}

const read = (path: string): string | null => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
};
const num = (s: string | null | undefined): number | null => (s == null || s.trim() === '' || Number.isNaN(Number(s)) ? null : Number(s));

/** Hardened mode's probe, in a child process (its filter would stay on in this one). */
function hardenProbe(): { ok: boolean | null; detail: string } {
  const index = new URL('./index.js', import.meta.url).href;
  const code = `import(${JSON.stringify(index)}).then((v) => {
    try { v.open({ harden: true, backend: 'auto' }).close(); console.log(JSON.stringify({ ok: true })); }
    catch (e) { console.log(JSON.stringify({ ok: false, detail: e.code + ': ' + e.message })); }
  });`;
  try {
    const out = execFileSync(process.execPath, ['-e', code], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120000 });
    const r = JSON.parse(out.trim().split('\n').pop()!) as { ok: boolean; detail?: string };
    return { ok: r.ok, detail: r.ok ? "open({ harden: true }) starts (its probe passed; the filter would stay on for the process's life)" : r.detail! };
  } catch (err) {
    return { ok: null, detail: `the probe's child process failed: ${(err as Error).message.split('\n')[0]}` };
  }
}

/** True when this process has an io_uring file descriptor (libuv makes one for file operations where it uses io_uring). */
function hasIoUringFd(): boolean {
  try {
    for (const fd of readdirSync('/proc/self/fd')) {
      try {
        if (readlinkSync(`/proc/self/fd/${fd}`).includes('io_uring')) return true;
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    // no /proc
  }
  return false;
}

export async function doctor(): Promise<DoctorReport> {
  const warnings: string[] = [];
  const flags = (read('/proc/cpuinfo') ?? '').match(/^flags\s*:(.*)$/m)?.[1]?.trim().split(/\s+/) ?? [];
  const cpu = { pku: flags.includes('pku'), ospke: flags.includes('ospke') };
  const report: DoctorReport = {
    verdict: '',
    status: 1,
    node: { version: process.version, v8: process.versions.v8, execPath: process.execPath },
    platform: platformTag(),
    kernel: release(),
    cpu,
    library: { error: 'not loaded' },
    backend: { choice: null, why: '', opened: false },
    pkeys: { vmpkCanHold: null, metadataKey: 1, heldByOthers: null, note: '' },
    seccomp: { mode: null, filters: null, hardenedWouldStart: null, detail: '' },
    maxMapCount: { limit: num(read('/proc/sys/vm/max_map_count')), mapsNow: (read('/proc/self/maps') ?? '').split('\n').filter(Boolean).length },
    ioUring: { kernelSetting: num(read('/proc/sys/kernel/io_uring_disabled')), libuvRing: false, detail: '' },
    warnings,
  };

  // The library (this may build it from source, as a first open() would).
  let n;
  try {
    n = getNative();
    const c = libraryChoice();
    let build: unknown = null;
    if (c?.prebuild) build = c.prebuild;
    else if (c?.source === 'source' || c?.source === 'built') build = 'built from source (native/build)';
    report.library = c ? { path: c.path, source: c.source, why: c.why, build } : { path: n.path, source: 'given', why: 'loaded before doctor ran', build };
  } catch (err) {
    report.library = { error: (err as Error).message };
  }

  if (n) {
    const env = process.env['VMPK_BACKEND'];
    const supported = n.pkuSupported();
    if (env === 'pku' || env === 'mprotect') {
      report.backend.choice = env;
      report.backend.why = `VMPK_BACKEND=${env}`;
    } else {
      report.backend.choice = supported ? 'pku' : 'mprotect';
      report.backend.why = supported
        ? "auto: the CPU has pku, the kernel ospke, and pkey_alloc works"
        : `auto: no memory protection keys here (${!cpu.pku ? "the CPU has no 'pku' flag" : !cpu.ospke ? "the kernel did not enable them ('ospke' missing)" : 'pkey_alloc fails'}), so the mprotect fallback`;
    }
    try {
      const rt = open();
      report.backend.opened = true;
      if (rt.backend === 'pku') {
        const held = rt.capabilities.hardwareKeys;
        report.pkeys.vmpkCanHold = held;
        // 16 keys: key 0 is everyone's default, one is vmpk's metadata key.
        report.pkeys.heldByOthers = Math.max(0, 15 - report.pkeys.metadataKey - held);
        report.pkeys.note = `15 allocatable keys: vmpk holds ${held} for regions and 1 for its metadata; ${report.pkeys.heldByOthers} held by other code in this process (Node 20's V8 allocates one when it first needs it; Node 22+ none)`;
      } else {
        report.pkeys.note = 'the mprotect backend uses no protection keys';
      }
      rt.close();
    } catch (err) {
      report.backend.error = `${(err as { code?: string }).code ?? 'Error'}: ${(err as Error).message}`;
    }
  }

  const status = read('/proc/self/status') ?? '';
  report.seccomp.mode = num(status.match(/^Seccomp:\s*(\d+)/m)?.[1]);
  report.seccomp.filters = num(status.match(/^Seccomp_filters:\s*(\d+)/m)?.[1]);
  if (n) {
    const probe = hardenProbe();
    report.seccomp.hardenedWouldStart = probe.ok;
    report.seccomp.detail = probe.detail;
  } else report.seccomp.detail = 'not probed: the library did not load';

  // libuv makes its ring at its first file operation where it uses io_uring.
  await readFile(fileURLToPath(import.meta.url));
  report.ioUring.libuvRing = hasIoUringFd();
  report.ioUring.detail = report.ioUring.libuvRing
    ? "libuv uses io_uring here: async file I/O may complete in the kernel's io_uring workers, whose PKRU is not the gate's thread's; keep region views out of async fs calls, or set UV_USE_IO_URING=0 (docs/troubleshooting.md)"
    : `libuv does not use io_uring in this process${process.env['UV_USE_IO_URING'] !== undefined ? ` (UV_USE_IO_URING=${process.env['UV_USE_IO_URING']})` : ''}`;

  const limit = report.maxMapCount.limit;
  if (limit !== null && limit < 262144) {
    warnings.push(`vm.max_map_count is ${limit}: every vmpk region is a mapping (two where a key's window is split); many keys can hit ENOMEM (sysctl -w vm.max_map_count=262144)`);
  }
  if (report.seccomp.hardenedWouldStart === false) warnings.push(`hardened mode would not start: ${report.seccomp.detail}`);
  if (report.ioUring.libuvRing) warnings.push(report.ioUring.detail);
  if (report.pkeys.vmpkCanHold !== null && report.pkeys.vmpkCanHold < 4) warnings.push(`only ${report.pkeys.vmpkCanHold} hardware keys for vmpk: expect many evictions`);

  if ('error' in report.library) {
    report.status = 1;
    report.verdict = `FAIL: the native library does not load on ${report.platform}`;
  } else if (!report.backend.opened) {
    report.status = 1;
    report.verdict = `FAIL: open() fails with the ${report.backend.choice} backend (${report.backend.error})`;
  } else if (report.backend.choice === 'pku') {
    report.status = 0;
    report.verdict = `OK: the pku backend works (${report.pkeys.vmpkCanHold} hardware keys)${warnings.length ? `; ${warnings.length} warning(s)` : ''}`;
  } else {
    report.status = 3;
    report.verdict = `MPROTECT ONLY: vmpk works with the mprotect backend (gates are process-wide, not per thread)${warnings.length ? `; ${warnings.length} warning(s)` : ''}`;
  }
  return report;
}

/** The report as text, one fact a line, the verdict last. */
export function formatDoctor(r: DoctorReport): string[] {
  const yes = (b: boolean | null) => (b === null ? 'unknown' : b ? 'yes' : 'no');
  const lines = [
    `node:            ${r.node.version} (V8 ${r.node.v8}) ${r.node.execPath}`,
    `platform:        ${r.platform}, kernel ${r.kernel}`,
    `cpu:             pku ${yes(r.cpu.pku)}, ospke ${yes(r.cpu.ospke)}`,
    'error' in r.library
      ? `library:         not loaded: ${r.library.error}`
      : `library:         ${r.library.path} (${r.library.why}; build: ${typeof r.library.build === 'object' && r.library.build ? JSON.stringify(r.library.build) : r.library.build ?? 'unknown'})`,
    `backend:         ${r.backend.choice ?? 'none'} (${r.backend.why || 'the library did not load'})${r.backend.error ? `; open() failed: ${r.backend.error}` : ''}`,
    `pkeys:           ${r.pkeys.note || 'not probed'}`,
    `seccomp:         mode ${r.seccomp.mode ?? 'unknown'}, ${r.seccomp.filters ?? 'unknown'} filter(s); hardened mode would start: ${yes(r.seccomp.hardenedWouldStart)} (${r.seccomp.detail})`,
    `vm.max_map_count: ${r.maxMapCount.limit ?? 'unknown'} (this process has ${r.maxMapCount.mapsNow} mappings)`,
    `io_uring:        kernel.io_uring_disabled=${r.ioUring.kernelSetting ?? 'unknown'}; ${r.ioUring.detail}`,
  ];
  for (const w of r.warnings) lines.push(`warning:         ${w}`);
  lines.push(r.verdict);
  return lines;
}
