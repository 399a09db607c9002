// Handles: plain, structured-cloneable objects that name a runtime or a key
// of this process, so that a worker thread can adopt() them and use the same
// C runtime. The C core is loaded once per process (one copy of libvmpk.so,
// one state); each thread has its own koffi binding and its own JS objects.
// Views cannot travel (an ArrayBuffer over native memory belongs to one
// thread's heap): the adopting thread makes its own with region.bytes.
import { accessName, parseAccess, type Access } from './access.js';
import { E_INVALID, E_NOT_REGION, E_STALE } from './codes.js';
import { VmpkError, describe, invalidArgument, nativeError, runtimeClosed } from './errors.js';
import { INTERNAL, closedNow, knownRuntimes, type KeyState, type RuntimeState } from './internal.js';
import { Key, checkKeyName } from './key.js';
import { getNative, type NativeInfo } from './native.js';
import { Region } from './region.js';
import { Runtime } from './runtime.js';

/** Names a runtime of this process; made by runtime.handle() (and inside key.handle()). */
export interface RuntimeHandle {
  readonly vmpk: 1;
  readonly kind: 'runtime';
  /** The process it is valid in. */
  readonly pid: number;
  /** The libvmpk.so file the owner's thread loaded, and the address of vmpk_open in it. */
  readonly library: string;
  readonly libraryIdentity: bigint;
  /** vmpk_runtime * */
  readonly pointer: number;
  /** Names this open runtime (a closed runtime's memory is reused by the next open). */
  readonly id: string;
  /** The owner's closed flag, shared with every thread that adopts the handle. */
  readonly state: SharedArrayBuffer;
}

/** A region of a key handle: where it is and how large (what key.alloc() was asked). */
export interface RegionHandle {
  readonly address: bigint;
  readonly size: number;
}

/** Names a key, its runtime and its regions; made by key.handle(). */
export interface KeyHandle {
  readonly vmpk: 1;
  readonly kind: 'key';
  readonly runtime: RuntimeHandle;
  /** vmpk_key: carries a generation, so a destroyed key's handle stays invalid for good. */
  readonly key: number;
  readonly name: string | null;
  /** The key's process-wide access when the handle was made. */
  readonly access: Access;
  /** The live regions known to the Key object the handle was made from. */
  readonly regions: readonly RegionHandle[];
}

export function makeRuntimeHandle(rs: RuntimeState): RuntimeHandle {
  return {
    vmpk: 1,
    kind: 'runtime',
    pid: process.pid,
    library: rs.n.path,
    libraryIdentity: rs.n.identity,
    pointer: rs.rt,
    id: rs.id,
    state: rs.shared.buffer as SharedArrayBuffer,
  };
}

export function makeKeyHandle(ks: KeyState): KeyHandle {
  const regions: RegionHandle[] = [];
  if (ks.regions !== undefined) for (const r of ks.regions) regions.push({ address: r.address, size: r.size });
  return {
    vmpk: 1,
    kind: 'key',
    runtime: makeRuntimeHandle(ks.rs),
    key: ks.handle,
    name: ks.name,
    access: accessName(ks.access),
    regions,
  };
}

const WHERE = 'adopt()';

function field(o: Record<string, unknown>, name: string, ok: (v: unknown) => boolean, what: string, path: string): unknown {
  const v = o[name];
  if (!ok(v)) throw invalidArgument(`${WHERE}: ${path}${name} must be ${what}, got ${describe(v)}; pass what runtime.handle() or key.handle() returned, unchanged`);
  return v;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isUint = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;

function adoptRuntimeState(h: unknown, path: string): RuntimeState {
  if (!isObject(h) || h['vmpk'] !== 1 || h['kind'] !== 'runtime') {
    throw invalidArgument(`${WHERE}: ${path || 'handle'} is not a runtime handle (made by runtime.handle()), got ${describe(h)}`);
  }
  const pid = field(h, 'pid', isUint, 'a process id', path) as number;
  if (pid !== process.pid) {
    throw invalidArgument(`${WHERE}: the handle was made in process ${pid}, and this is process ${process.pid}: a handle names memory of its own process only (a child process gets nothing of its parent's runtime); open a runtime of its own here`);
  }
  const library = field(h, 'library', (v) => typeof v === 'string' && v !== '', 'a path', path) as string;
  const identity = field(h, 'libraryIdentity', (v) => typeof v === 'bigint', 'a bigint', path) as bigint;
  const pointer = field(h, 'pointer', isUint, 'a pointer (a number)', path) as number;
  const id = field(h, 'id', (v) => typeof v === 'string' && v !== '', 'a string', path) as string;
  const state = field(h, 'state', (v) => v instanceof SharedArrayBuffer && v.byteLength >= 4, 'a SharedArrayBuffer', path) as SharedArrayBuffer;

  const known = knownRuntimes.get(id)?.deref();
  if (known !== undefined && !closedNow(known)) return known;
  knownRuntimes.delete(id); // collected, or closed by its owner
  const shared = new Int32Array(state, 0, 1);
  if (Atomics.load(shared, 0) !== 0) throw runtimeClosed(WHERE);

  const n = getNative(library);
  if (n.identity !== identity) {
    throw new VmpkError(
      'LIBRARY_LOAD_FAILED',
      `${WHERE}: this thread loaded another copy of the native library (${n.path}) than the handle's thread (${library}); the C core's state is shared only within one copy. Load the same file in every thread, and do not replace libvmpk.so while a process that uses it runs`,
    );
  }
  const info = {} as NativeInfo;
  if (n.info(pointer, info) !== 0) throw runtimeClosed(WHERE);
  const rs: RuntimeState = {
    n,
    rt: pointer,
    closed: false,
    pageSize: info.pageSize,
    runtime: undefined as unknown as Runtime,
    owner: false,
    id,
    shared,
    pinWait: undefined,
  };
  new Runtime(INTERNAL, rs, info); // sets rs.runtime
  knownRuntimes.set(id, new WeakRef(rs));
  return rs;
}

/**
 * The Runtime (for a runtime handle) or the Key with its regions (for a key
 * handle) that a handle names, bound to the same C runtime as in the thread
 * that made the handle. For worker threads of one process; a handle is
 * plain data and travels through postMessage() or workerData. Adopting in
 * the thread that made the handle gives the same Runtime.
 */
export function adopt(handle: RuntimeHandle): Runtime;
export function adopt(handle: KeyHandle): Key;
export function adopt(handle: RuntimeHandle | KeyHandle): Runtime | Key;
export function adopt(handle: RuntimeHandle | KeyHandle): Runtime | Key {
  if (!isObject(handle) || handle['vmpk'] !== 1 || (handle['kind'] !== 'runtime' && handle['kind'] !== 'key')) {
    throw invalidArgument(`${WHERE}: handle must be what runtime.handle() or key.handle() returned, got ${describe(handle)}`);
  }
  if (handle.kind === 'runtime') return adoptRuntimeState(handle, '').runtime;

  const h = handle as unknown as Record<string, unknown>;
  const key = field(h, 'key', isUint, 'a key handle (a number)', '') as number;
  const name = h['name'] === null ? null : checkKeyName(field(h, 'name', (v) => v === null || typeof v === 'string', 'a string or null', ''), `${WHERE}: handle`);
  const access = parseAccess(h['access'], `${WHERE}: handle.access`);
  const regions = field(h, 'regions', Array.isArray, 'an array', '') as unknown[];
  const checked = regions.map((r, i) => {
    if (!isObject(r) || typeof r['address'] !== 'bigint' || r['address'] <= 0n || r['address'] >= 1n << 64n || !isUint(r['size'])) {
      throw invalidArgument(`${WHERE}: handle.regions[${i}] must be { address: bigint, size: number }, got ${describe(r)}`);
    }
    return { address: r['address'], size: r['size'] as number };
  });
  const rs = adoptRuntimeState(h['runtime'], 'handle.runtime.');
  // A handle is data from anywhere: each region must be, per the core, a
  // live region of this very key, starting at that address and at least
  // that large. Otherwise a forged size or address would make region.bytes
  // a view over pages of other keys' windows.
  // First the key itself: vmpk_free of no region asks the core about the
  // key and changes nothing (NOT_A_REGION: the key lives; STALE: destroyed).
  const rcKey = rs.n.free(rs.rt, key, 0n);
  if (rcKey === E_STALE) {
    // A destroyed key's handle is still data: the Key says so on first use.
    const dead: KeyState = { rs, handle: key, name, key: undefined as unknown as Key, destroyed: false, access, regions: undefined, shared: true };
    dead.key = new Key(INTERNAL, dead);
    return dead.key;
  }
  if (rcKey === E_INVALID) throw invalidArgument(`${WHERE}: handle.key (${key}) is not a key handle of this runtime; pass what key.handle() returned, unchanged`);
  if (rcKey !== E_NOT_REGION) throw nativeError(rcKey, WHERE);
  const out = { key: 0, region: 0n, size: 0 };
  for (let i = 0; i < checked.length; i++) {
    const r = checked[i]!;
    const rc = rs.n.lookup(rs.rt, r.address, out);
    if (rc !== 0 || out.key !== key || out.region !== r.address || r.size > out.size) {
      const what = rc !== 0 || out.key === 0 ? 'is not a live region of any key' : out.key !== key ? 'belongs to another key' : out.region !== r.address ? 'is not the start of a region' : `is a region of ${out.size} bytes, not ${r.size}`;
      throw new VmpkError('NOT_A_REGION', `${WHERE}: handle.regions[${i}] (address 0x${r.address.toString(16)}, size ${r.size}) ${what} of this runtime; pass what key.handle() returned, unchanged (a region freed or a key destroyed since then is gone)`);
    }
  }
  const ks: KeyState = { rs, handle: key, name, key: undefined as unknown as Key, destroyed: false, access, regions: undefined, shared: true };
  ks.key = new Key(INTERNAL, ks);
  if (checked.length > 0) {
    ks.regions = new Set();
    for (const r of checked) ks.regions.add(new Region(INTERNAL, ks, r.address, r.size));
  }
  return ks.key;
}
