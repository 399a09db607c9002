// The one place that knows koffi. It loads libvmpk.so, declares the calls of
// native/include/vmpk.h, and exports plain functions over numbers and bigints.
// Nothing here validates arguments: the callers (runtime.ts, key.ts,
// region.ts) hand over clean values only.
//
// Conventions of this binding:
//   - vmpk_runtime * travels as a JS number. x86-64 user addresses are below
//     2^47, so a number holds it exactly, and koffi converts a number to
//     uintptr_t about 10% faster than a BigInt to a pointer. The gate itself
//     (the hot path) passes no runtime at all: vmpk_enter/vmpk_leave take the
//     handle, which names its runtime.
//   - vmpk_key is a number: vmpk.h promises handles below 2^53.
//   - region addresses are bigints (koffi 3's pointer representation).
//   - every call returns the C int result; outputs go into caller-owned
//     one-element arrays or objects, written only when the call succeeded.
import koffi, { type TypeObject } from 'koffi';
import { VmpkError } from './errors.js';
import { BUILD_COMMAND, type LibraryChoice, chooseLibrary, platformTag } from './library.js';

export interface NativeOptions {
  backend: number;
  maxHwKeys: number;
  windowSize: number;
  /** 1: hardened mode (the seccomp filter). */
  harden: number;
}

/** struct vmpk_harden_info in camelCase. */
export interface NativeHardenInfo {
  active: boolean;
  seccompMode: number;
  seccompFilters: number;
  seccompModeBefore: number;
  seccompFiltersBefore: number;
  /** enum vmpk_probe_failure bits. */
  probeFailed: number;
}

export interface NativeInfo {
  backend: number;
  threadLocal: boolean;
  hwKeysBudget: number;
  pageSize: number;
  windowSize: number;
  /** A build whose PKRU is a variable (make stub): counts the pku backend's work, protects nothing. */
  pkruStubbed: boolean;
}

/** struct vmpk_stats in camelCase, every field a number. */
export interface NativeStats {
  gates: number;
  hits: number;
  misses: number;
  evictions: number;
  pkeyMprotectCalls: number;
  mprotectCalls: number;
  syscalls: number;
  pkruWrites: number;
  faultsRepaired: number;
  shootdowns: number;
  liveVkeys: number;
  residentVkeys: number;
  hwKeysHeld: number;
  regions: number;
  mappedBytes: number;
  metadataBytes: number;
  shootdownSignals: number;
  pins: number;
  /** pku: WRPKRUs that only opened or closed vmpk's write-protected metadata (pkruWrites counts those that also set a key's bits). */
  metaPkruWrites: number;
  /** Without PKU: mprotect calls that guard vmpk's metadata (not in syscalls): two at open, none after. */
  metaMprotectCalls: number;
}

export interface Native {
  /** The file that was loaded. */
  readonly path: string;
  /**
   * The address of vmpk_open in the loaded copy: two threads share the C
   * core's state only if they see the same copy (a library file replaced
   * after the first load is a second copy, with state of its own).
   */
  readonly identity: bigint;
  open(options: NativeOptions, out: [number]): number;
  close(rt: number): number;
  info(rt: number, out: NativeInfo): number;
  stats(rt: number, out: NativeStats): number;
  keyCreate(rt: number, name: string | null, access: number, windowSize: number, out: [number]): number;
  /**
   * vmpk_keys_create: handles.length keys (n), each with a region of
   * regionSize bytes when it is > 0; handles and, then, addresses (length n)
   * are filled in place.
   */
  keysCreate(rt: number, n: number, access: number, windowSize: number, regionSize: number, handles: BigUint64Array, addresses: BigUint64Array | null): number;
  keyDestroy(rt: number, key: number): number;
  alloc(rt: number, key: number, size: number, out: [bigint]): number;
  free(rt: number, key: number, region: bigint): number;
  /** vmpk_begin on the key's own runtime (vmpk_enter). */
  begin(key: number, access: number): number;
  /** vmpk_end on the key's own runtime (vmpk_leave). */
  end(key: number): number;
  /**
   * vmpk_gate_index: the key as a 32-bit gate index (runtime id, slot and
   * generation, exactly), or 0 where it has none: then begin/end.
   */
  gateIndex(key: number): number;
  /** vmpk_enter_r / vmpk_enter_rw / vmpk_leave_index: the gate by its index, passed through the thread's mailbox (vmpk_mailbox_*). */
  enterR(index: number): number;
  enterRw(index: number): number;
  leaveIndex(index: number): number;
  protect(rt: number, key: number, access: number): number;
  /** vmpk_pin / vmpk_unpin: the key stays resident without a gate (async gates). */
  pin(rt: number, key: number): number;
  unpin(rt: number, key: number): number;
  probe(address: bigint, access: number): number;
  /**
   * vmpk_probe_key: the probe for a region of `key`. 0 once the key is
   * destroyed (even after a later key took its window), VMPK_E_NOT_REGION
   * outside the key's window, else as probe().
   */
  probeKey(key: number, address: bigint, access: number): number;
  /**
   * vmpk_probe run on a libuv pool thread (koffi's async call): resolves
   * with its result. For tests of what other threads see.
   */
  probeAsync(address: bigint, access: number): Promise<number>;
  lookup(rt: number, address: bigint, out: { key: number; region: bigint; size: number }): number;
  strerror(rc: number): string;
  lastErrno(): number;
  pkuSupported(): boolean;
  hardenInfo(out: NativeHardenInfo): number;
  /** A zero-copy ArrayBuffer over native memory. `address` must not be 0. */
  view(address: bigint, length: number): ArrayBuffer;
  /**
   * The machine code at `address` as a JS function of the C function type
   * `signature` ('int64_t (int64_t, int64_t)'). Throws koffi's TypeError for
   * a signature it cannot parse. `address` must hold code of that type.
   */
  codeFunction(address: bigint, signature: string): NativeCode;
  /**
   * One call of the code at `address` (koffi.call): no function object is
   * made, which costs koffi several microseconds. Same rules as codeFunction().
   */
  callCode(address: bigint, signature: string, args: unknown[]): unknown;
  /** Parses (and keeps) the function type; throws koffi's error for a bad one. */
  checkSignature(signature: string): void;
  /**
   * The koffi functions themselves, by their C name, for the benchmarks
   * (bench/*.mjs measure a bare koffi call against the API): declared once,
   * here, against vmpk.h's structs.
   */
  readonly raw: Readonly<Record<'vmpk_open' | 'vmpk_close' | 'vmpk_key_create' | 'vmpk_alloc' | 'vmpk_begin' | 'vmpk_end' | 'vmpk_enter' | 'vmpk_leave' | 'vmpk_gate_index' | 'vmpk_enter_rw' | 'vmpk_leave_index' | 'vmpk_gate_mailbox' | 'vmpk_mailbox_enter_rw' | 'vmpk_mailbox_leave', (...args: unknown[]) => unknown>>;
  /**
   * vmpk_view_hold: counts a view of the window holding `address` (delta 1)
   * or releases one (-1); a destroyed key's window is reused by no later key
   * while a view of it is counted. delta 0: the number of quarantined windows.
   */
  viewHold(address: bigint, delta: number): number;
}

/** A native function made by codeFunction(). */
export interface NativeCode {
  call(...args: unknown[]): unknown;
  /** The same call on a libuv pool thread (koffi's async call). */
  callAsync(args: unknown[]): Promise<unknown>;
}

/** vmpk_key_create's flag for executable keys (VMPK_KEY_EXEC in vmpk.h). */
export { KEY_EXEC } from './codes.js';

const STATS_FIELDS = [
  ['gates', 'gates'],
  ['hits', 'hits'],
  ['misses', 'misses'],
  ['evictions', 'evictions'],
  ['pkey_mprotect_calls', 'pkeyMprotectCalls'],
  ['mprotect_calls', 'mprotectCalls'],
  ['syscalls', 'syscalls'],
  ['pkru_writes', 'pkruWrites'],
  ['faults_repaired', 'faultsRepaired'],
  ['shootdowns', 'shootdowns'],
  ['live_vkeys', 'liveVkeys'],
  ['resident_vkeys', 'residentVkeys'],
  ['hw_keys_held', 'hwKeysHeld'],
  ['regions', 'regions'],
  ['mapped_bytes', 'mappedBytes'],
  ['metadata_bytes', 'metadataBytes'],
  ['shootdown_signals', 'shootdownSignals'],
  ['pins', 'pins'],
  ['meta_pkru_writes', 'metaPkruWrites'],
  ['meta_mprotect_calls', 'metaMprotectCalls'],
] as const satisfies ReadonlyArray<readonly [string, keyof NativeStats]>;

/**
 * The structs of vmpk.h, member by member in C order. The C core writes whole
 * structs into buffers koffi sizes from these lists, so a member missing here
 * is a buffer overflow: test/binding.test.ts compares them with the header.
 */
export const C_STRUCTS: Readonly<Record<'vmpk_options' | 'vmpk_info' | 'vmpk_stats' | 'vmpk_harden_info', ReadonlyArray<readonly [string, string]>>> = {
  vmpk_options: [
    ['backend', 'int'],
    ['max_hw_keys', 'int'],
    ['window_size', 'size_t'],
    ['harden', 'int'],
  ],
  vmpk_info: [
    ['backend', 'int'],
    ['thread_local', 'int'],
    ['hw_keys_budget', 'int'],
    ['page_size', 'size_t'],
    ['window_size', 'size_t'],
    ['pkru_stubbed', 'int'],
  ],
  vmpk_stats: STATS_FIELDS.map(([c]) => [c, 'uint64_t'] as const),
  vmpk_harden_info: [
    ['active', 'int'],
    ['seccomp_mode', 'int'],
    ['seccomp_filters', 'int'],
    ['seccomp_mode_before', 'int'],
    ['seccomp_filters_before', 'int'],
    ['probe_failed', 'int'],
  ],
};

const struct = (name: keyof typeof C_STRUCTS) => koffi.struct(name, Object.fromEntries(C_STRUCTS[name]));
const OPTIONS = struct('vmpk_options');
const INFO = struct('vmpk_info');
const STATS = struct('vmpk_stats');
const HARDEN_INFO = struct('vmpk_harden_info');

/** Where libvmpk.so is looked for: see library.ts (may build it from source, once). */
export function libraryPath(): string {
  return (chosen ??= chooseLibrary()).path;
}
let chosen: LibraryChoice | undefined;
/** How the loaded library was chosen (vmpk doctor); undefined before the first load. */
export function libraryChoice(): LibraryChoice | undefined {
  return chosen;
}

function toNumber(v: number | bigint): number {
  return typeof v === 'bigint' ? Number(v) : v;
}

function load(path: string): Native {
  const lib = koffi.load(path);
  const out = (t: string | TypeObject) => koffi.out(koffi.pointer(t));

  const vmpk_open = lib.func('vmpk_open', 'int', [koffi.pointer(OPTIONS), out('uintptr_t')]);
  const vmpk_close = lib.func('vmpk_close', 'int', ['uintptr_t']);
  const vmpk_info = lib.func('vmpk_info', 'int', ['uintptr_t', out(INFO)]);
  const vmpk_stats = lib.func('vmpk_stats', 'int', ['uintptr_t', out(STATS)]);
  const vmpk_key_create = lib.func('vmpk_key_create', 'int', ['uintptr_t', 'const char *', 'int', 'size_t', out('uint64_t')]);
  // Typed arrays travel by reference: the core writes straight into them.
  const vmpk_keys_create = lib.func('vmpk_keys_create', 'int', ['uintptr_t', 'size_t', 'int', 'size_t', 'size_t', 'uint64_t *', 'uint64_t *']);
  const vmpk_key_destroy = lib.func('vmpk_key_destroy', 'int', ['uintptr_t', 'uint64_t']);
  const vmpk_alloc = lib.func('vmpk_alloc', 'int', ['uintptr_t', 'uint64_t', 'size_t', out('void *')]);
  const vmpk_free = lib.func('vmpk_free', 'int', ['uintptr_t', 'uint64_t', 'void *']);
  // The hot path: integers only, no out-parameters, nothing to marshal back.
  // vmpk_enter/vmpk_leave: vmpk_begin/vmpk_end by handle alone (it names its
  // runtime), one argument less for koffi to convert on every gate.
  const vmpk_enter = lib.func('vmpk_enter', 'int', ['uint64_t', 'int']);
  const vmpk_leave = lib.func('vmpk_leave', 'int', ['uint64_t']);
  // Narrower still: a 32-bit gate index and the access chosen by the
  // function. koffi converts a uint32_t argument for about a third of what
  // (uint64_t, int) costs it (bench/gate.mjs); the C side decodes the index
  // back into the handle and checks it in full.
  const vmpk_gate_index = lib.func('vmpk_gate_index', 'uint32_t', ['uint64_t']);
  const vmpk_enter_rw = lib.func('vmpk_enter_rw', 'int', ['uint32_t']);
  const vmpk_leave_index = lib.func('vmpk_leave_index', 'int', ['uint32_t']);
  // Cheapest: no argument, no result. The index goes in, the result comes out
  // through this thread's mailbox (two int32 of thread-local storage): koffi
  // makes a void(void) call for about half of an int(uint32_t) one, and a
  // typed-array store or load costs next to nothing. The mailbox is the
  // calling thread's, and this module is loaded once per thread (isolate).
  const vmpk_gate_mailbox = lib.func('vmpk_gate_mailbox', 'void *', []);
  const vmpk_mailbox_enter_r = lib.func('vmpk_mailbox_enter_r', 'void', []);
  const vmpk_mailbox_enter_rw = lib.func('vmpk_mailbox_enter_rw', 'void', []);
  const vmpk_mailbox_leave = lib.func('vmpk_mailbox_leave', 'void', []);
  const mailbox = new Int32Array(koffi.view(vmpk_gate_mailbox(), 8));
  const vmpk_protect = lib.func('vmpk_protect', 'int', ['uintptr_t', 'uint64_t', 'int']);
  const vmpk_pin = lib.func('vmpk_pin', 'int', ['uintptr_t', 'uint64_t']);
  const vmpk_unpin = lib.func('vmpk_unpin', 'int', ['uintptr_t', 'uint64_t']);
  const vmpk_probe = lib.func('vmpk_probe', 'int', ['const void *', 'int']);
  const vmpk_probe_key = lib.func('vmpk_probe_key', 'int', ['uint64_t', 'const void *', 'int']);
  const vmpk_lookup = lib.func('vmpk_lookup', 'int', ['uintptr_t', 'const void *', out('uint64_t'), out('void *'), out('size_t')]);
  const vmpk_strerror = lib.func('vmpk_strerror', 'const char *', ['int']);
  const vmpk_last_errno = lib.func('vmpk_last_errno', 'int', []);
  const vmpk_pku_supported = lib.func('vmpk_pku_supported', 'int', []);
  const vmpk_begin = lib.func('vmpk_begin', 'int', ['uintptr_t', 'uint64_t', 'int']);
  const vmpk_end = lib.func('vmpk_end', 'int', ['uintptr_t', 'uint64_t']);
  const vmpk_view_hold = lib.func('vmpk_view_hold', 'int', ['const void *', 'int']);
  // Function types by signature: koffi registers a named prototype for good,
  // so a second proto() of 'int f(int)' would fail; one per signature is kept.
  const protos = new Map<string, TypeObject>();
  const protoOf = (signature: string): TypeObject => {
    let proto = protos.get(signature);
    if (proto === undefined) {
      proto = koffi.proto(signature);
      protos.set(signature, proto);
    }
    return proto;
  };
  const vmpk_harden_info = lib.func('vmpk_harden_info', 'int', [out(HARDEN_INFO)]);

  return {
    path,
    raw: { vmpk_open, vmpk_close, vmpk_key_create, vmpk_alloc, vmpk_begin, vmpk_end, vmpk_enter, vmpk_leave, vmpk_gate_index, vmpk_enter_rw, vmpk_leave_index, vmpk_gate_mailbox, vmpk_mailbox_enter_rw, vmpk_mailbox_leave },
    identity: koffi.address(lib.symbol('vmpk_open')),
    open(o, outRt) {
      const cell: [number | bigint] = [0];
      const rc = vmpk_open(
        {
          backend: o.backend,
          max_hw_keys: o.maxHwKeys,
          window_size: o.windowSize,
          harden: o.harden,
        },
        cell,
      ) as number;
      if (rc === 0) outRt[0] = toNumber(cell[0]);
      return rc;
    },
    close: (rt) => vmpk_close(rt) as number,
    info(rt, o) {
      const s: Record<string, number | bigint> = {};
      const rc = vmpk_info(rt, s) as number;
      if (rc === 0) {
        o.backend = toNumber(s['backend']!);
        o.threadLocal = s['thread_local'] !== 0;
        o.hwKeysBudget = toNumber(s['hw_keys_budget']!);
        o.pageSize = toNumber(s['page_size']!);
        o.windowSize = toNumber(s['window_size']!);
        o.pkruStubbed = s['pkru_stubbed'] !== 0;
      }
      return rc;
    },
    stats(rt, o) {
      const s: Record<string, number | bigint> = {};
      const rc = vmpk_stats(rt, s) as number;
      if (rc === 0) for (const [c, js] of STATS_FIELDS) o[js] = toNumber(s[c]!);
      return rc;
    },
    keyCreate(rt, name, access, windowSize, outKey) {
      const cell: [number | bigint] = [0];
      const rc = vmpk_key_create(rt, name, access, windowSize, cell) as number;
      if (rc === 0) outKey[0] = toNumber(cell[0]);
      return rc;
    },
    keysCreate: (rt, n, access, windowSize, regionSize, handles, addresses) =>
      vmpk_keys_create(rt, n, access, windowSize, regionSize, handles, addresses) as number,
    keyDestroy: (rt, key) => vmpk_key_destroy(rt, key) as number,
    alloc(rt, key, size, outRegion) {
      const cell: [bigint | null] = [null];
      const rc = vmpk_alloc(rt, key, size, cell) as number;
      if (rc === 0) outRegion[0] = cell[0] as bigint;
      return rc;
    },
    free: (rt, key, region) => vmpk_free(rt, key, region) as number,
    begin: (key, access) => vmpk_enter(key, access) as number,
    end: (key) => vmpk_leave(key) as number,
    gateIndex: (key) => vmpk_gate_index(key) as number,
    enterR(index) {
      mailbox[0] = index;
      vmpk_mailbox_enter_r();
      return mailbox[1]!;
    },
    enterRw(index) {
      mailbox[0] = index;
      vmpk_mailbox_enter_rw();
      return mailbox[1]!;
    },
    leaveIndex(index) {
      mailbox[0] = index;
      vmpk_mailbox_leave();
      return mailbox[1]!;
    },
    protect: (rt, key, access) => vmpk_protect(rt, key, access) as number,
    pin: (rt, key) => vmpk_pin(rt, key) as number,
    unpin: (rt, key) => vmpk_unpin(rt, key) as number,
    probe: (address, access) => vmpk_probe(address, access) as number,
    probeKey: (key, address, access) => vmpk_probe_key(key, address, access) as number,
    probeAsync: (address, access) =>
      new Promise<number>((resolve, reject) => {
        vmpk_probe.async(address, access, (err: unknown, rc: unknown) => (err ? reject(err) : resolve(rc as number)));
      }),
    lookup(rt, address, o) {
      const k: [number | bigint] = [0];
      const r: [bigint | null] = [null];
      const z: [number | bigint] = [0];
      const rc = vmpk_lookup(rt, address, k, r, z) as number;
      if (rc === 0) {
        o.key = toNumber(k[0]);
        o.region = r[0] ?? 0n;
        o.size = toNumber(z[0]);
      }
      return rc;
    },
    strerror: (rc) => vmpk_strerror(rc) as string,
    lastErrno: () => vmpk_last_errno() as number,
    pkuSupported: () => vmpk_pku_supported() !== 0,
    hardenInfo(o) {
      const s: Record<string, number> = {};
      const rc = vmpk_harden_info(s) as number;
      if (rc === 0) {
        o.active = s['active'] !== 0;
        o.seccompMode = s['seccomp_mode']!;
        o.seccompFilters = s['seccomp_filters']!;
        o.seccompModeBefore = s['seccomp_mode_before']!;
        o.seccompFiltersBefore = s['seccomp_filters_before']!;
        o.probeFailed = s['probe_failed']!;
      }
      return rc;
    },
    view(address, length) {
      // koffi.view(null or 0, n) aborts the process: never let it see one.
      if (address === 0n) throw new Error('vmpk: internal error: view of a null pointer');
      return koffi.view(address, length);
    },
    codeFunction(address, signature) {
      const proto = protoOf(signature);
      if (address === 0n) throw new Error('vmpk: internal error: code at a null pointer');
      const fn = koffi.decode(address, proto) as KoffiCode;
      return {
        call: (...args) => fn(...args),
        callAsync: (args) =>
          new Promise((resolve, reject) => {
            fn.async(...args, (err: unknown, result: unknown) => (err ? reject(err) : resolve(result)));
          }),
      };
    },
    checkSignature(signature) {
      protoOf(signature);
    },
    callCode(address, signature, args) {
      const proto = protoOf(signature);
      if (address === 0n) throw new Error('vmpk: internal error: code at a null pointer');
      return koffi.call(address, proto, ...args);
    },
    viewHold: (address, delta) => vmpk_view_hold(address, delta) as number,
  };
}

type KoffiCode = ((...args: unknown[]) => unknown) & { async(...args: unknown[]): void };

let loaded: Native | undefined;

/**
 * Loads libvmpk.so once per thread (each worker has its own binding, over the
 * same copy of the library: dlopen of one file gives one copy per process);
 * later calls return the same binding. `path` (adopt(): the library the
 * handle's thread loaded) overrides $VMPK_LIBRARY for the first load only.
 */
export function getNative(path: string = libraryPath()): Native {
  if (loaded !== undefined) return loaded;
  try {
    loaded = load(path);
  } catch (err) {
    const env = process.env['VMPK_LIBRARY'];
    const fromEnv = env !== undefined && env !== '' && path === env ? ' (from the environment variable VMPK_LIBRARY)' : '';
    throw new VmpkError(
      'LIBRARY_LOAD_FAILED',
      `vmpk: cannot load the native library ${path}${fromEnv}: ${(err as Error).message}; on ${platformTag()}, build it from source with \`${BUILD_COMMAND}\` in your project (needs make and a C compiler) or point VMPK_LIBRARY at a libvmpk.so`,
      { cause: err },
    );
  }
  return loaded;
}
