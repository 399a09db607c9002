// A Runtime: one vmpk_runtime of the C core, its keys and its statistics.
import { parseAccess, parseGateAccess, type Access, type GateAccess } from './access.js';
import { VmpkError, describe, invalidArgument, nativeError, runtimeClosed } from './errors.js';
import { makeRuntimeHandle, type RuntimeHandle } from './handle.js';
import { CodeCache, createCodeCache, type CodeCacheOptions } from './codecache.js';
import { INTERNAL, closedNow, knownRuntimes, notConstructible, type KeyState, type RuntimeState } from './internal.js';
import { inspectProcess, type InspectReport } from './inspect/index.js';
import { createKeys, type KeyBatch, type KeysOptions } from './batch.js';
import { Key, checkKeyName, checkWindowSize } from './key.js';
import type { NativeInfo, NativeStats } from './native.js';
import { Region, endRuntimeViews, regionKeyState } from './region.js';
import { checkInteger, checkOptionsObject, rejectUnknownOptions } from './validate.js';

export type Backend = 'pku' | 'mprotect';

export interface Capabilities {
  /** True when a gate gives access to the calling thread only (pku); false when it is process-wide while open (mprotect). */
  readonly threadLocal: boolean;
  /** pku: the hardware keys this runtime may hold (its cache size); 0 on mprotect. */
  readonly hardwareKeys: number;
  readonly pageSize: number;
  /** The default address window of a new key, in bytes. */
  readonly windowSize: number;
  /** True in a test build of the core whose PKRU is a plain variable: the pku backend's work is counted, nothing is protected. */
  readonly pkruStubbed: boolean;
}

/** struct vmpk_stats, in camelCase: counters since open(), and current values (liveVkeys, residentVkeys, hwKeysHeld, regions, mappedBytes, metadataBytes, pins). */
export type Stats = NativeStats;

export interface KeyOptions {
  /** Printed in fault reports; at most 63 bytes of UTF-8, no control characters. */
  name?: string;
  /** The process-wide access. Default 'none'. */
  access?: Access;
  /** The address space the key's regions share, in bytes. Default: capabilities.windowSize. */
  windowSize?: number;
}

const KEY_OPTIONS = ['name', 'access', 'windowSize'] as const;
const KEY_ALIASES: Readonly<Record<string, string>> = {
  label: 'name',
  perm: 'access',
  perms: 'access',
  permission: 'access',
  permissions: 'access',
  prot: 'access',
  protection: 'access',
  window: 'windowSize',
  windowbytes: 'windowSize',
  size: 'windowSize',
};

import { E_BUSY, E_NOMEM, E_SYSTEM } from './codes.js';

/** probe()'s access and offset checks, for an answer known without probing: true when they pass. */
function checkProbeArgs(access: unknown, offset: unknown, limit: number, where: string): boolean {
  parseGateAccess(access, where);
  checkInteger(offset, 'offset', where, 0, limit);
  return true;
}

export class Runtime {
  readonly #rs: RuntimeState;
  readonly #backend: Backend;
  readonly #capabilities: Capabilities;

  /** @internal Runtimes are made by open() and adopt(). */
  constructor(token: typeof INTERNAL, rs: RuntimeState, info: NativeInfo) {
    if (token !== INTERNAL) throw notConstructible('Runtime', 'open()');
    this.#rs = rs;
    rs.runtime = this;
    this.#backend = info.backend === 1 ? 'pku' : 'mprotect';
    this.#capabilities = Object.freeze({
      threadLocal: info.threadLocal,
      hardwareKeys: info.hwKeysBudget,
      pageSize: info.pageSize,
      windowSize: info.windowSize,
      pkruStubbed: info.pkruStubbed,
    });
  }

  /** The backend in use: 'pku' (hardware keys) or 'mprotect' (page protection). */
  get backend(): Backend {
    return this.#backend;
  }

  get capabilities(): Capabilities {
    return this.#capabilities;
  }

  /** True after close(), also for a runtime adopted in another thread once its owner closed it. */
  get closed(): boolean {
    return closedNow(this.#rs);
  }

  /** True for a Runtime made by adopt() from a handle, false for the one open() returned (the owner). */
  get adopted(): boolean {
    return !this.#rs.owner;
  }

  #check(where: string): RuntimeState {
    const rs = this.#rs;
    if (closedNow(rs)) throw runtimeClosed(where);
    return rs;
  }

  /**
   * A plain, structured-cloneable object naming this runtime, for a worker
   * thread of this process to pass to adopt(): it gets a Runtime over the
   * same C runtime (keys and regions are handed over with key.handle()).
   */
  handle(): RuntimeHandle {
    return makeRuntimeHandle(this.#check('runtime.handle()'));
  }

  #fail(rc: number, where: string, advice?: string): VmpkError {
    return nativeError(rc, where, advice, rc === E_SYSTEM ? this.#rs.n.lastErrno() : undefined);
  }

  /** A new virtual key: unlimited in number, each with its own address window. */
  createKey(options?: KeyOptions): Key {
    const where = 'runtime.createKey()';
    const o = checkOptionsObject(options, where);
    rejectUnknownOptions(o, KEY_OPTIONS, where, KEY_ALIASES);
    const name = checkKeyName(o['name'], where);
    const access = o['access'] === undefined ? 0 : parseAccess(o['access'], where);
    const windowSize = o['windowSize'] === undefined ? 0 : checkWindowSize(o['windowSize'], 'windowSize', where);
    const rs = this.#check(where);
    const out: [number] = [0];
    const rc = rs.n.keyCreate(rs.rt, name, access, windowSize, out);
    if (rc !== 0) {
      const advice = rc === E_NOMEM ? `no room for another window of ${windowSize || this.#capabilities.windowSize} bytes in vmpk's address-space arena (4 TiB for all keys of the process); destroy keys, or use smaller windows` : undefined;
      throw this.#fail(rc, where, advice);
    }
    const ks: KeyState = { rs, handle: out[0], name, key: undefined as unknown as Key, destroyed: false, access, regions: undefined, shared: false };
    ks.key = new Key(INTERNAL, ks);
    return ks.key;
  }

  /**
   * `count` new keys in one native call, each with one region of
   * `options.regionSize` bytes when it is given: the way to make thousands
   * to millions of keys (one createKey() and alloc() cost about 1.7 us; a
   * batch about 0.1 us a key). The keys are unnamed. All or nothing: when
   * it throws, no key of the batch exists. Key and Region objects are made
   * when batch.key(i) or batch.region(i) first asks for them.
   */
  createKeys(count: number, options?: KeysOptions): KeyBatch {
    const rs = this.#check('runtime.createKeys()');
    return createKeys(rs, this.#capabilities.windowSize, count, options, (rc, w, advice) => this.#fail(rc, w, advice));
  }

  /**
   * A code cache for a JIT: `size` bytes of executable memory on a key of
   * its own, which every thread may run at all times and only
   * cache.emit() may write (see codecache.ts and docs/api.md).
   */
  createCodeCache(options: CodeCacheOptions): CodeCache {
    return createCodeCache(this.#rs, options, (rc, where) => this.#fail(rc, where));
  }

  /** The runtime's counters (struct vmpk_stats) as a fresh plain object. */
  stats(): Stats {
    const rs = this.#check('runtime.stats()');
    const out = {} as Stats;
    const rc = rs.n.stats(rs.rt, out);
    if (rc !== 0) throw this.#fail(rc, 'runtime.stats()');
    return out;
  }

  /**
   * Scans this process's executable mappings for WRPKRU and XRSTOR byte
   * sequences (also those spanning instructions, pages and adjacent
   * mappings) and gives each a verdict: a vmpk gate, a known library
   * wrapper (glibc's pkey_set), or unsafe. See docs/security.md.
   */
  inspect(): InspectReport {
    this.#check('runtime.inspect()');
    return inspectProcess();
  }

  /**
   * Whether the calling thread may access `address` (plus `offset`) with
   * `access` right now. It tries the access for real and catches the fault,
   * so it tells the truth for any address. A Region stands for its address;
   * a freed region or one of a destroyed key may still be probed.
   */
  probe(address: bigint | Region, access: GateAccess, offset: number = 0): boolean {
    const where = 'runtime.probe()';
    let base: bigint;
    let limit: number;
    if (address instanceof Region) {
      if (address.key.runtime !== this) throw new VmpkError('WRONG_RUNTIME', `${where}: the region belongs to another runtime; probe it with region.key.runtime.probe()`);
      base = address.address;
      limit = address.size - 1;
      // A destroyed key's window goes back to the arena and a later key may
      // take it: the region's answer is false from the destroy on, whatever
      // lives at its address now (this thread's view of the key, or, for a
      // key other threads share, the core's).
      if (address.key.destroyed) return checkProbeArgs(access, offset, limit, where) && false;
      const ks = regionKeyState(address);
      if (ks.shared) {
        const out = { key: 0, region: 0n, size: 0 };
        const rs = this.#check(where);
        if (rs.n.lookup(rs.rt, base, out) !== 0 || out.key !== ks.handle) return checkProbeArgs(access, offset, limit, where) && false;
      }
    } else if (typeof address === 'bigint') {
      if (address < 0n || address >= 1n << 64n) throw invalidArgument(`${where}: address must be a bigint from 0n to 2n ** 64n - 1n, got ${describe(address)}`);
      base = address;
      limit = Number.MAX_SAFE_INTEGER;
    } else {
      throw invalidArgument(`${where}: address must be a bigint or a Region, got ${describe(address)}`);
    }
    const a = parseGateAccess(access, where);
    const off = checkInteger(offset, 'offset', where, 0, limit);
    const target = base + BigInt(off);
    if (target >= 1n << 64n) throw invalidArgument(`${where}: address + offset is beyond 2n ** 64n - 1n`);
    const rs = this.#check(where);
    const rc = rs.n.probe(target, a);
    if (rc < 0) throw this.#fail(rc, where);
    return rc === 1;
  }

  /**
   * Closes the runtime: destroys every key and frees every region. Idempotent:
   * closing a closed runtime does nothing. Throws KEY_BUSY while a gate is
   * open on any thread (inside key.with()) or an async gate pins a key, and
   * then nothing changes. Only the owner (the Runtime open() returned) may
   * close; an adopted one throws NOT_OWNER.
   */
  close(): void {
    const rs = this.#rs;
    if (!rs.owner) {
      throw new VmpkError('NOT_OWNER', 'runtime.close(): this Runtime was adopted from a handle; only the Runtime that open() returned (in the thread that opened it) may close it. Stop using it here instead, and let the owner close it when every thread is done');
    }
    if (rs.closed) return;
    const rc = rs.n.close(rs.rt);
    if (rc !== 0) {
      const advice = rc === E_BUSY ? 'a gate is open on one of its keys (on some thread), or key.withAsync() pins one; close the runtime after they return' : undefined;
      throw this.#fail(rc, 'runtime.close()', advice);
    }
    rs.closed = true;
    Atomics.store(rs.shared, 0, 1);
    knownRuntimes.delete(rs.id);
    endRuntimeViews(rs);
  }
}
