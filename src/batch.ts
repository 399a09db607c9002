// runtime.createKeys(): many keys, each with one region, in one native call
// (vmpk_keys_create). A Key made one at a time costs about 1.7 us, nearly
// all of it the FFI crossing and the objects made for it; a batch crosses
// once and makes a key's objects only when asked for them.
import { parseAccess, type Access } from './access.js';
import { describe, invalidArgument, type VmpkError } from './errors.js';
import { INTERNAL, notConstructible, type KeyState, type RuntimeState } from './internal.js';
import { Key, checkWindowSize } from './key.js';
import { MAX_WINDOW_SIZE } from './codes.js';
import { Region } from './region.js';
import { checkInteger, checkOptionsObject, rejectUnknownOptions } from './validate.js';

export interface KeysOptions {
  /** The process-wide access of every key. Default 'none'. */
  access?: Access;
  /** Each key's address window, in bytes. Default: capabilities.windowSize. */
  windowSize?: number;
  /** Bytes of the one region each key gets (rounded up to pages); 0 for none. Default 0. */
  regionSize?: number;
}

const KEYS_OPTIONS = ['access', 'windowSize', 'regionSize'] as const;
const KEYS_ALIASES: Readonly<Record<string, string>> = {
  perm: 'access',
  prot: 'access',
  protection: 'access',
  window: 'windowSize',
  size: 'regionSize',
  region: 'regionSize',
  regionbytes: 'regionSize',
  bytes: 'regionSize',
};

import { E_NOMEM, E_TOO_MANY, E_WINDOW_FULL, MAX_KEYS } from './codes.js';
/** Live vkeys one runtime can hold (VMPK_MAX_KEYS). */
export { MAX_KEYS };

/**
 * The keys of one runtime.createKeys() call, by index. key(i) and region(i)
 * make their objects on first use and return the same ones after that;
 * handle(i) and address(i) make none.
 */
export class KeyBatch {
  readonly #rs: RuntimeState;
  readonly #access: number;
  readonly #regionSize: number;
  readonly #handles: BigUint64Array;
  readonly #addresses: BigUint64Array | null;
  readonly #keys: (Key | undefined)[] = [];
  readonly #regions: (Region | undefined)[] = [];

  /** @internal Batches are made by runtime.createKeys(). */
  constructor(token: typeof INTERNAL, rs: RuntimeState, access: number, regionSize: number, handles: BigUint64Array, addresses: BigUint64Array | null) {
    if (token !== INTERNAL) throw notConstructible('KeyBatch', 'runtime.createKeys(count)');
    this.#rs = rs;
    this.#access = access;
    this.#regionSize = regionSize;
    this.#handles = handles;
    this.#addresses = addresses;
  }

  /** How many keys the batch made. */
  get length(): number {
    return this.#handles.length;
  }

  /** The regionSize each key's region was given; 0 when they have none. */
  get regionSize(): number {
    return this.#regionSize;
  }

  #index(i: unknown, where: string): number {
    if (this.#handles.length === 0) throw invalidArgument(`${where}: the batch is empty`);
    return checkInteger(i, 'index', where, 0, this.#handles.length - 1);
  }

  /** The i-th Key, with its region (if any) in key.regions. */
  key(i: number): Key {
    const at = this.#index(i, 'batch.key()');
    return this.#keys[at] ?? this.#make(at);
  }

  /** The i-th key's region: key(i)'s first region as made by the batch. Null when regionSize was 0. */
  region(i: number): Region | null {
    const at = this.#index(i, 'batch.region()');
    if (this.#addresses === null) return null;
    if (this.#keys[at] === undefined) this.#make(at);
    return this.#regions[at]!;
  }

  /** The i-th key's region address (0n without regions), with no object made. */
  address(i: number): bigint {
    const at = this.#index(i, 'batch.address()');
    return this.#addresses === null ? 0n : this.#addresses[at]!;
  }

  *[Symbol.iterator](): IterableIterator<Key> {
    for (let i = 0; i < this.#handles.length; i++) yield this.key(i);
  }

  #make(at: number): Key {
    const ks: KeyState = {
      rs: this.#rs,
      handle: Number(this.#handles[at]),
      name: null,
      key: undefined as unknown as Key,
      destroyed: false,
      access: this.#access,
      regions: undefined,
      shared: false,
    };
    ks.key = new Key(INTERNAL, ks);
    if (this.#addresses !== null) {
      const region = new Region(INTERNAL, ks, this.#addresses[at]!, this.#regionSize);
      ks.regions = new Set([region]);
      this.#regions[at] = region;
    }
    this.#keys[at] = ks.key;
    return ks.key;
  }
}

/** runtime.createKeys(): checks, the native batch, the KeyBatch. rs is open; fail is the runtime's error for a native code. */
export function createKeys(rs: RuntimeState, defaultWindow: number, count: unknown, options: unknown, fail: (rc: number, where: string, advice?: string) => VmpkError): KeyBatch {
  const where = 'runtime.createKeys()';
  const n = checkInteger(count, 'count', where, 0, MAX_KEYS);
  const o = checkOptionsObject(options, where);
  if (Object.hasOwn(o, 'name')) {
    throw invalidArgument(`${where}: keys made in a batch are unnamed (a name costs metadata for each key); use runtime.createKey({ name }) for a named key`);
  }
  rejectUnknownOptions(o, KEYS_OPTIONS, where, KEYS_ALIASES);
  const access = o['access'] === undefined ? 0 : parseAccess(o['access'], where);
  const windowSize = o['windowSize'] === undefined ? 0 : checkWindowSize(o['windowSize'], 'windowSize', where);
  const regionSize = o['regionSize'] === undefined ? 0 : checkInteger(o['regionSize'], 'regionSize', where, 0, MAX_WINDOW_SIZE);
  const window = Math.ceil((windowSize || defaultWindow) / 2 ** 20) * 2 ** 20;
  if (regionSize > window) {
    throw invalidArgument(`${where}: regionSize (${describe(regionSize)}) is larger than each key's window of ${window} bytes; pass a windowSize of at least regionSize`);
  }
  const handles = new BigUint64Array(n);
  const addresses = regionSize > 0 ? new BigUint64Array(n) : null;
  const rc = rs.n.keysCreate(rs.rt, n, access, windowSize, regionSize, handles, addresses);
  if (rc !== 0) {
    const advice =
      rc === E_NOMEM
        ? `no room for ${n} more windows of ${window} bytes in vmpk's address-space arena (4 TiB for all keys of the process), or out of memory; destroy keys, or use smaller windows. No key of the batch was made`
        : rc === E_TOO_MANY
          ? `a runtime holds at most ${MAX_KEYS} live keys; no key of the batch was made`
          : rc === E_WINDOW_FULL
            ? `regionSize does not fit a window of ${window} bytes; no key of the batch was made`
            : undefined;
    throw fail(rc, where, advice);
  }
  return new KeyBatch(INTERNAL, rs, access, regionSize, handles, addresses);
}
