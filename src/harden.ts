// Hardened mode's state (vmpk_harden_info): whether vmpk's seccomp filter is
// on in this process, the kernel's seccomp state, and what the last refused
// probe found. See docs/security.md.
import { nativeError } from './errors.js';
import { getNative, type NativeHardenInfo } from './native.js';

/** The system calls the probe found failing, by enum vmpk_probe_failure bit. */
const PROBE_FAILURES: ReadonlyArray<readonly [number, string]> = [
  [1, 'mprotect'],
  [2, 'madvise'],
  [4, 'pkey_alloc'],
  [8, 'pkey_mprotect'],
  [16, 'mmap'],
  [32, 'munmap'],
  [64, 'rt_sigaction/tgkill'],
  [128, 'the probe was killed (a filter returning KILL or TRAP)'],
  [256, 'fork'],
];

export interface HardenInfo {
  /** True once a hardened open() installed vmpk's filter: it stays on for the life of the process (and its children). */
  readonly active: boolean;
  /** The Seccomp: line of /proc/self/status now: 0 none, 1 strict, 2 filter (-1 unknown). */
  readonly seccompMode: number;
  /** The Seccomp_filters: line now (-1 before Linux 5.9). */
  readonly seccompFilters: number;
  /** Both as the first hardened open() found them, before its own filter (-1 before any). */
  readonly seccompModeBefore: number;
  readonly seccompFiltersBefore: number;
  /** The calls a filter already in place made fail at the last refused open({ harden: true }). */
  readonly probeFailed: readonly string[];
}

export function describeProbeFailures(bits: number): string[] {
  return PROBE_FAILURES.filter(([bit]) => (bits & bit) !== 0).map(([, name]) => name);
}

/** The process's hardened-mode state. */
export function hardenInfo(): HardenInfo {
  const n = getNative();
  const o = {} as NativeHardenInfo;
  const rc = n.hardenInfo(o);
  if (rc !== 0) throw nativeError(rc, 'hardenInfo()');
  return Object.freeze({
    active: o.active,
    seccompMode: o.seccompMode,
    seccompFilters: o.seccompFilters,
    seccompModeBefore: o.seccompModeBefore,
    seccompFiltersBefore: o.seccompFiltersBefore,
    probeFailed: Object.freeze(describeProbeFailures(o.probeFailed)),
  });
}
