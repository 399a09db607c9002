// open(): options, the backend choice (option, then $VMPK_BACKEND, then auto),
// hardened mode (option, then $VMPK_HARDEN), and the native vmpk_open.
import { randomUUID } from 'node:crypto';
import { describe, invalidArgument, nativeError } from './errors.js';
import { hardenInfo } from './harden.js';
import { INTERNAL, knownRuntimes, type RuntimeState } from './internal.js';
import { getNative, type NativeInfo } from './native.js';
import { checkWindowSize } from './key.js';
import { Runtime } from './runtime.js';
import { checkBoolean, checkInteger, checkOptionsObject, rejectUnknownOptions } from './validate.js';

export interface OpenOptions {
  /** 'auto' (default: pku where supported, else mprotect), 'pku' or 'mprotect'. Default: $VMPK_BACKEND, else 'auto'. */
  backend?: 'auto' | 'pku' | 'mprotect';
  /** pku: the most hardware keys to use, 1 to 15. Default: all it can get. Ignored by mprotect. */
  maxHardwareKeys?: number;
  /** The default address window of a key, in bytes. Default 1 MiB. */
  windowSize?: number;
  /**
   * Hardened mode: a seccomp filter on every thread that keeps other code
   * from changing vmpk's memory through the kernel (mprotect, pkey_mprotect,
   * munmap, madvise, mremap, fixed mmap), and denies process_vm_readv/writev,
   * ptrace and other syscall ABIs (int 0x80, x32). It stays on for the life
   * of the process and its children; see docs/security.md. Default:
   * $VMPK_HARDEN ('1' or '0'), else false.
   */
  harden?: boolean;
}

const OPEN_OPTIONS = ['backend', 'maxHardwareKeys', 'windowSize', 'harden'] as const;
const OPEN_ALIASES: Readonly<Record<string, string>> = {
  maxhwkeys: 'maxHardwareKeys',
  hwkeys: 'maxHardwareKeys',
  hardwarekeys: 'maxHardwareKeys',
  maxkeys: 'maxHardwareKeys',
  maxpkeys: 'maxHardwareKeys',
  pkeys: 'maxHardwareKeys',
  window: 'windowSize',
  windowbytes: 'windowSize',
  mode: 'backend',
  engine: 'backend',
  hardened: 'harden',
  hardening: 'harden',
  seccomp: 'harden',
};

const BACKENDS: Readonly<Record<string, number>> = { auto: AUTO, pku: PKU, mprotect: MPROTECT };
const BACKEND_LIST = "'auto', 'pku' or 'mprotect'";

import { BACKEND_AUTO as AUTO, BACKEND_MPROTECT as MPROTECT, BACKEND_PKU as PKU, E_FILTERED, E_INVALID, E_SYSTEM, E_TOO_MANY, E_UNSUPPORTED } from './codes.js';

function resolveHarden(option: unknown): boolean {
  if (option !== undefined) {
    return checkBoolean(option, "option 'harden'", 'open()');
  }
  const env = process.env['VMPK_HARDEN'];
  if (env === undefined || env === '' || env === '0') return false;
  if (env === '1') return true;
  throw invalidArgument(`open(): the environment variable VMPK_HARDEN must be '1' or '0' (or unset), got ${describe(env)}`);
}

function resolveBackend(option: unknown): { backend: number; source: string } {
  if (option !== undefined) {
    if (typeof option !== 'string' || !Object.hasOwn(BACKENDS, option)) {
      throw invalidArgument(`open(): option 'backend' must be ${BACKEND_LIST}, got ${describe(option)}`);
    }
    return { backend: BACKENDS[option]!, source: `the option backend: '${option}'` };
  }
  const env = process.env['VMPK_BACKEND'];
  if (env === undefined || env === '') return { backend: AUTO, source: "the default backend 'auto'" };
  if (!Object.hasOwn(BACKENDS, env)) {
    throw invalidArgument(`open(): the environment variable VMPK_BACKEND must be ${BACKEND_LIST} (or unset), got ${describe(env)}`);
  }
  return { backend: BACKENDS[env]!, source: `the environment variable VMPK_BACKEND=${env}` };
}

/**
 * Opens a runtime. At most 8 may be open at once in a process. Close it with
 * runtime.close() when done: nothing closes it for you.
 */
export function open(options?: OpenOptions): Runtime {
  const where = 'open()';
  const o = checkOptionsObject(options, where);
  rejectUnknownOptions(o, OPEN_OPTIONS, where, OPEN_ALIASES);
  const { backend, source } = resolveBackend(o['backend']);
  const maxHwKeys = o['maxHardwareKeys'] === undefined ? 0 : checkInteger(o['maxHardwareKeys'], "option 'maxHardwareKeys'", where, 1, 15);
  const windowSize = o['windowSize'] === undefined ? 0 : checkWindowSize(o['windowSize'], "option 'windowSize'", where);
  const harden = resolveHarden(o['harden']);

  const n = getNative();
  // Resolved here, never left to the core: its AUTO consults $VMPK_BACKEND
  // itself, which would let the environment override an explicit 'auto'.
  const resolved = backend === AUTO ? (n.pkuSupported() ? PKU : MPROTECT) : backend;
  const out: [number] = [0];
  const rc = n.open({ backend: resolved, maxHwKeys, windowSize, harden: harden ? 1 : 0 }, out);
  if (rc !== 0) {
    let advice: string | undefined;
    if (rc === E_UNSUPPORTED) {
      advice = `the pku backend was asked for by ${source}, but this CPU or kernel has no memory protection keys (no 'pku'/'ospke' in /proc/cpuinfo, or pkey_alloc fails); use backend 'auto' or 'mprotect'`;
    } else if (rc === E_TOO_MANY) {
      advice = 'at most 8 runtimes may be open at once in a process; close one with runtime.close() first';
    } else if (rc === E_FILTERED) {
      const h = hardenInfo();
      advice = `hardened mode refused: a seccomp filter already in place (Seccomp: ${h.seccompMode}, ${h.seccompFilters} filters) makes these calls fail or not take effect in a probe: ${h.probeFailed.join(', ')}; open without harden, or run without that filter`;
    } else if (rc === E_SYSTEM && harden) {
      advice = 'a system call failed; with harden: true this may be the kernel refusing the seccomp filter (no CONFIG_SECCOMP_FILTER, or a thread it could not synchronize)';
    } else if (rc === E_INVALID) {
      advice = `the native core rejected the options ${JSON.stringify({ maxHardwareKeys: maxHwKeys || undefined, windowSize: windowSize || undefined })} (see docs/api.md)`;
    }
    throw nativeError(rc, where, advice, rc === E_SYSTEM ? n.lastErrno() : undefined);
  }
  const rt = out[0];
  const info = {} as NativeInfo;
  const rcInfo = n.info(rt, info);
  if (rcInfo !== 0) {
    const err = nativeError(rcInfo, 'open(): vmpk_info', undefined, rcInfo === E_SYSTEM ? n.lastErrno() : undefined);
    n.close(rt);
    throw err;
  }
  const rs: RuntimeState = {
    n,
    rt,
    closed: false,
    pageSize: info.pageSize,
    runtime: undefined as unknown as Runtime,
    owner: true,
    id: randomUUID(),
    shared: new Int32Array(new SharedArrayBuffer(4)),
    pinWait: undefined,
  };
  const runtime = new Runtime(INTERNAL, rs, info);
  knownRuntimes.set(rs.id, new WeakRef(rs));
  return runtime;
}

/** True if this CPU and kernel support memory protection keys (the pku backend). */
export function pkuSupported(): boolean {
  return getNative().pkuSupported();
}

