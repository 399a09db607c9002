// Misuse from TypeScript: each case asserts the exact VmpkError code, and that
// nothing changed (the runtime's stats and the objects' state are as before).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Key, Region, adopt, open, pkuSupported, type Runtime, type VmpkErrorCode } from '../src/index.js';
import { expectVmpkError, onPku } from './helpers/vmpk.js';

let rt: Runtime;
let other: Runtime;
let closedRt: Runtime;
let key: Key; // access 'none', one region
let region: Region;
let otherRegion: Region; // a region of `other`
let deadKey: Key; // destroyed
let deadKeyRegion: Region; // a region of deadKey
let freed: Region; // freed region of `key`
let closedKey: Key; // a key of closedRt
let closedRegion: Region;

beforeAll(() => {
  rt = open();
  other = open();
  key = rt.createKey({ name: 'victim' });
  region = key.alloc(4096);
  key.with('rw', () => region.bytes.fill(7));
  freed = key.alloc(4096);
  freed.free();
  otherRegion = other.createKey().alloc(4096);
  deadKey = rt.createKey({ name: 'dead' });
  deadKeyRegion = deadKey.alloc(100);
  deadKey.destroy();
  closedRt = open();
  closedKey = closedRt.createKey({ name: 'gone' });
  closedRegion = closedKey.alloc(4096);
  closedRt.close();
});

afterAll(() => {
  rt.close();
  other.close();
});

const noop = () => 1;

type Case = [string, () => unknown, VmpkErrorCode];

const cases: Case[] = [
  // open(): options
  ['open(null)', () => open(null as never), 'INVALID_ARGUMENT'],
  ["open('pku')", () => open('pku' as never), 'INVALID_ARGUMENT'],
  ['open([])', () => open([] as never), 'INVALID_ARGUMENT'],
  ['open({ maxHwKeys: 2 }) (near-miss name)', () => open({ maxHwKeys: 2 } as never), 'INVALID_ARGUMENT'],
  ['open({ windowsize: 1 << 20 }) (wrong case)', () => open({ windowsize: 1 << 20 } as never), 'INVALID_ARGUMENT'],
  ["open({ backend: 'fast' })", () => open({ backend: 'fast' as never }), 'INVALID_ARGUMENT'],
  ['open({ backend: 1 })', () => open({ backend: 1 as never }), 'INVALID_ARGUMENT'],
  ['open({ maxHardwareKeys: 0 })', () => open({ maxHardwareKeys: 0 }), 'INVALID_ARGUMENT'],
  ['open({ maxHardwareKeys: 16 })', () => open({ maxHardwareKeys: 16 }), 'INVALID_ARGUMENT'],
  ['open({ maxHardwareKeys: 2.5 })', () => open({ maxHardwareKeys: 2.5 }), 'INVALID_ARGUMENT'],
  ['open({ maxHardwareKeys: NaN })', () => open({ maxHardwareKeys: NaN }), 'INVALID_ARGUMENT'],
  ["open({ maxHardwareKeys: '2' })", () => open({ maxHardwareKeys: '2' as never }), 'INVALID_ARGUMENT'],
  ['open({ windowSize: -1 })', () => open({ windowSize: -1 }), 'INVALID_ARGUMENT'],
  ['open({ windowSize: Infinity })', () => open({ windowSize: Infinity }), 'INVALID_ARGUMENT'],
  ['open({ windowSize: 2 ** 53 })', () => open({ windowSize: 2 ** 53 }), 'INVALID_ARGUMENT'],
  ["open({ faultHandler: false }) (no such option)", () => open({ faultHandler: false } as never), 'INVALID_ARGUMENT'],

  // runtime.createKey()
  ['createKey(5)', () => rt.createKey(5 as never), 'INVALID_ARGUMENT'],
  ['createKey(null)', () => rt.createKey(null as never), 'INVALID_ARGUMENT'],
  ['createKey({ name: 42 })', () => rt.createKey({ name: 42 as never }), 'INVALID_ARGUMENT'],
  ['createKey({ name: 64 bytes })', () => rt.createKey({ name: 'x'.repeat(64) }), 'INVALID_ARGUMENT'],
  ['createKey({ name: 22 three-byte characters })', () => rt.createKey({ name: '\u20ac'.repeat(22) }), 'INVALID_ARGUMENT'],
  ['createKey({ name with a newline })', () => rt.createKey({ name: 'a\nb' }), 'INVALID_ARGUMENT'],
  ['createKey({ name with NUL })', () => rt.createKey({ name: 'a\0b' }), 'INVALID_ARGUMENT'],
  ['createKey({ name with DEL })', () => rt.createKey({ name: 'a\x7fb' }), 'INVALID_ARGUMENT'],
  ['createKey({ name with a C1 control (U+0085, NEL) })', () => rt.createKey({ name: 'a\u0085b' }), 'INVALID_ARGUMENT'],
  ['createKey({ name with a C1 control (U+009B, CSI) })', () => rt.createKey({ name: 'a\u009b31mb' }), 'INVALID_ARGUMENT'],
  ['createKey({ name with U+2028 })', () => rt.createKey({ name: 'a\u2028b' }), 'INVALID_ARGUMENT'],
  ['createKey({ name with a bidi override (U+202E) })', () => rt.createKey({ name: 'a\u202eb' }), 'INVALID_ARGUMENT'],
  ['createKey({ name with a bidi isolate (U+2067) })', () => rt.createKey({ name: 'a\u2067b' }), 'INVALID_ARGUMENT'],
  ['createKey({ name with a lone high surrogate })', () => rt.createKey({ name: 'a\ud800b' }), 'INVALID_ARGUMENT'],
  ['createKey({ name with a lone low surrogate })', () => rt.createKey({ name: '\udc00' }), 'INVALID_ARGUMENT'],
  ['createCodeCache({ name with a C1 control })', () => rt.createCodeCache({ name: '\u0090', size: 4096 }), 'INVALID_ARGUMENT'],
  ['adopt(handle with a forged region size)', () => adopt({ ...key.handle(), regions: [{ address: region.address, size: 2 ** 30 }] }), 'NOT_A_REGION'],
  ['adopt(handle naming a region of another runtime)', () => adopt({ ...key.handle(), regions: [{ address: otherRegion.address, size: 4096 }] }), 'NOT_A_REGION'],
  ['adopt(handle naming a freed region)', () => adopt({ ...key.handle(), regions: [{ address: freed.address, size: 4096 }] }), 'NOT_A_REGION'],
  ['adopt(handle with a region address of 2n ** 64n)', () => adopt({ ...key.handle(), regions: [{ address: 2n ** 64n, size: 4096 }] }), 'INVALID_ARGUMENT'],
  ['adopt(handle with a name holding a C1 control)', () => adopt({ ...key.handle(), name: '\u0085' }), 'INVALID_ARGUMENT'],
  ["createKey({ access: 'read' })", () => rt.createKey({ access: 'read' as never }), 'INVALID_ARGUMENT'],
  ["createKey({ access: 'w' })", () => rt.createKey({ access: 'w' as never }), 'INVALID_ARGUMENT'],
  ['createKey({ access: 3 })', () => rt.createKey({ access: 3 as never }), 'INVALID_ARGUMENT'],
  ['createKey({ windowSize: 0 })', () => rt.createKey({ windowSize: 0 }), 'INVALID_ARGUMENT'],
  ['createKey({ windowSize: 1.5 })', () => rt.createKey({ windowSize: 1.5 }), 'INVALID_ARGUMENT'],
  ['createKey({ windowSize: 2 ** 43 }) (beyond the 4 TiB arena)', () => rt.createKey({ windowSize: 2 ** 43 }), 'INVALID_ARGUMENT'],
  ["createKey({ label: 'x' })", () => rt.createKey({ label: 'x' } as never), 'INVALID_ARGUMENT'],

  // key.alloc()
  ['alloc(0)', () => key.alloc(0), 'INVALID_ARGUMENT'],
  ['alloc(-4096)', () => key.alloc(-4096), 'INVALID_ARGUMENT'],
  ['alloc(NaN)', () => key.alloc(NaN), 'INVALID_ARGUMENT'],
  ['alloc(Infinity)', () => key.alloc(Infinity), 'INVALID_ARGUMENT'],
  ['alloc(2 ** 53)', () => key.alloc(2 ** 53), 'INVALID_ARGUMENT'],
  ['alloc(2 ** 64)', () => key.alloc(2 ** 64), 'INVALID_ARGUMENT'],
  ['alloc(1.5)', () => key.alloc(1.5), 'INVALID_ARGUMENT'],
  ["alloc('4096')", () => key.alloc('4096' as never), 'INVALID_ARGUMENT'],
  ['alloc(4096n)', () => key.alloc(4096n as never), 'INVALID_ARGUMENT'],
  ['alloc() with no size', () => (key.alloc as (s?: number) => Region)(), 'INVALID_ARGUMENT'],
  ['alloc(2 MiB) in a 1 MiB window', () => key.alloc(2 << 20), 'WINDOW_FULL'],
  ['alloc(2 ** 52) (a safe integer, beyond any window)', () => key.alloc(2 ** 52), 'INVALID_ARGUMENT'],

  // key.with()
  ["with('w', fn)", () => key.with('w' as never, noop), 'INVALID_ARGUMENT'],
  ["with('none', fn)", () => key.with('none' as never, noop), 'INVALID_ARGUMENT'],
  ["with('RW', fn)", () => key.with('RW' as never, noop), 'INVALID_ARGUMENT'],
  ["with('rw', 'fn')", () => key.with('rw', 'fn' as never), 'INVALID_ARGUMENT'],
  ["with('rw') with no fn", () => (key.with as unknown as (a: string) => unknown)('rw'), 'INVALID_ARGUMENT'],

  // key.protect()
  ["protect('x')", () => key.protect('x' as never), 'INVALID_ARGUMENT'],
  ['protect(1)', () => key.protect(1 as never), 'INVALID_ARGUMENT'],
  ['protect(undefined)', () => key.protect(undefined as never), 'INVALID_ARGUMENT'],

  // runtime.probe()
  ["probe(4096, 'r') (a number, not a bigint)", () => rt.probe(4096 as never, 'r'), 'INVALID_ARGUMENT'],
  ["probe(-1n, 'r')", () => rt.probe(-1n, 'r'), 'INVALID_ARGUMENT'],
  ["probe(2n ** 64n, 'r')", () => rt.probe(2n ** 64n, 'r'), 'INVALID_ARGUMENT'],
  ["probe(region, 'w')", () => rt.probe(region, 'w' as never), 'INVALID_ARGUMENT'],
  ["probe(region, 'none')", () => rt.probe(region, 'none' as never), 'INVALID_ARGUMENT'],
  ["probe(region, 'r', region.size) (past its end)", () => rt.probe(region, 'r', region.size), 'INVALID_ARGUMENT'],
  ["probe(region, 'r', -1)", () => rt.probe(region, 'r', -1), 'INVALID_ARGUMENT'],
  ["probe(region, 'r', 0.5)", () => rt.probe(region, 'r', 0.5), 'INVALID_ARGUMENT'],
  ["probe({ address }, 'r') (a forged region)", () => rt.probe({ address: region.address } as never, 'r'), 'INVALID_ARGUMENT'],
  ["probe(region of another runtime, 'r')", () => rt.probe(otherRegion, 'r'), 'WRONG_RUNTIME'],

  // destroyed key
  ['destroyed key: alloc', () => deadKey.alloc(4096), 'KEY_DESTROYED'],
  ["destroyed key: with('r')", () => deadKey.with('r', noop), 'KEY_DESTROYED'],
  ["destroyed key: protect('rw')", () => deadKey.protect('rw'), 'KEY_DESTROYED'],
  ['destroyed key: destroy() again', () => deadKey.destroy(), 'KEY_DESTROYED'],
  ["destroyed key's region: bytes", () => deadKeyRegion.bytes, 'KEY_DESTROYED'],
  ["destroyed key's region: free()", () => deadKeyRegion.free(), 'KEY_DESTROYED'],

  // freed region
  ['freed region: free() again', () => freed.free(), 'DOUBLE_FREE'],
  ['freed region: bytes', () => freed.bytes, 'REGION_FREED'],

  // closed runtime
  ['closed runtime: createKey', () => closedRt.createKey(), 'RUNTIME_CLOSED'],
  ['closed runtime: stats', () => closedRt.stats(), 'RUNTIME_CLOSED'],
  ["closed runtime: probe", () => closedRt.probe(region.address, 'r'), 'RUNTIME_CLOSED'],
  ["closed runtime: key.with('rw')", () => closedKey.with('rw', noop), 'RUNTIME_CLOSED'],
  ['closed runtime: key.alloc', () => closedKey.alloc(4096), 'RUNTIME_CLOSED'],
  ["closed runtime: key.protect('r')", () => closedKey.protect('r'), 'RUNTIME_CLOSED'],
  ['closed runtime: key.destroy', () => closedKey.destroy(), 'RUNTIME_CLOSED'],
  ['closed runtime: region.bytes', () => closedRegion.bytes, 'RUNTIME_CLOSED'],
  ['closed runtime: region.free', () => closedRegion.free(), 'RUNTIME_CLOSED'],

  // misuse inside a gate
  ['key.destroy() inside a gate on it', () => key.with('r', () => key.destroy()), 'KEY_BUSY'],
  ['runtime.close() inside a gate', () => key.with('r', () => rt.close()), 'KEY_BUSY'],
];

/** Everything observable that a failed call must leave as it was. */
function state() {
  return {
    stats: rt.stats(),
    otherStats: other.stats(),
    key: { access: key.access, destroyed: key.destroyed },
    region: { freed: region.freed, size: region.size },
    freed: freed.freed,
    deadKey: deadKey.destroyed,
    closed: [rt.closed, other.closed, closedRt.closed],
  };
}

describe('bad input', () => {
  it(`has at least 30 distinct cases (${cases.length})`, () => {
    expect(new Set(cases.map(([name]) => name)).size).toBe(cases.length);
    expect(cases.length).toBeGreaterThanOrEqual(30);
  });

  it.each(cases)('%s throws %s... and changes nothing', (_name, fn, code) => {
    const before = state();
    const err = expectVmpkError(fn, code);
    expect(err.message.length).toBeGreaterThan(20);
    const after = state();
    // The two KEY_BUSY cases open (and close) a gate around the refused
    // call, which the gate counters see: compare what outlives a gate.
    if (code === 'KEY_BUSY') {
      const durable = (s: typeof before.stats) => [s.liveVkeys, s.regions, s.mappedBytes, s.metadataBytes];
      expect(durable(after.stats)).toEqual(durable(before.stats));
      expect({ ...after, stats: null }).toEqual({ ...before, stats: null });
    } else {
      expect(after).toEqual(before);
    }
    // The region still holds what was written before.
    expect(key.with('r', () => region.bytes.every((b) => b === 7))).toBe(true);
  });

  it('messages name the call, the value and the fix', () => {
    expect(expectVmpkError(() => open({ maxHwKeys: 2 } as never), 'INVALID_ARGUMENT').message).toBe(
      "open(): unknown option 'maxHwKeys'; did you mean 'maxHardwareKeys'?",
    );
    expect(expectVmpkError(() => key.alloc(-4096), 'INVALID_ARGUMENT').message).toBe('key.alloc(): size must be an integer from 1 to 4398046511104, got -4096');
    expect(expectVmpkError(() => key.with('read' as never, noop), 'INVALID_ARGUMENT').message).toBe(
      "key.with(): access must be one of 'r', 'rw', got \"read\"; did you mean 'r'?",
    );
    expect(expectVmpkError(() => key.protect('x' as never), 'INVALID_ARGUMENT').message).toBe(
      "key.protect(): access must be one of 'none', 'r', 'rw', got \"x\"",
    );
    expect(expectVmpkError(() => rt.createKey({ label: 'x' } as never), 'INVALID_ARGUMENT').message).toBe(
      "runtime.createKey(): unknown option 'label'; did you mean 'name'?",
    );
    expect(expectVmpkError(() => open({ colour: 1 } as never), 'INVALID_ARGUMENT').message).toBe(
      "open(): unknown option 'colour'; valid options are 'backend', 'maxHardwareKeys', 'windowSize', 'harden'",
    );
    expect(expectVmpkError(() => freed.free(), 'DOUBLE_FREE').message).toContain(`0x${freed.address.toString(16)}`);
    expect(expectVmpkError(() => key.alloc(2 << 20), 'WINDOW_FULL').message).toContain('"victim"');
    expect(expectVmpkError(() => deadKey.alloc(1), 'KEY_DESTROYED').message).toContain('"dead"');
  });

  it('keys and regions cannot be forged or constructed', () => {
    expect(() => new (Key as unknown as new () => Key)()).toThrow(TypeError);
    expect(() => new (Region as unknown as new () => Region)()).toThrow(TypeError);
    // Methods on foreign objects: vmpk's INVALID_ARGUMENT (src/brand.ts), not V8's private-field TypeError.
    expectVmpkError(() => Key.prototype.with.call({} as Key, 'r', noop), 'INVALID_ARGUMENT');
    expectVmpkError(() => Object.getOwnPropertyDescriptor(Region.prototype, 'bytes')!.get!.call({}), 'INVALID_ARGUMENT');
  });

  it('a rejected async fn is refused after its gate closed, and its rejection is not left unhandled', () => {
    const before = rt.stats();
    let ran = false;
    const err = expectVmpkError(
      () =>
        // @ts-expect-error key.with() refuses a promise-returning fn at compile time too
        key.with('rw', async () => {
          ran = true;
          throw new Error('boom');
        }),
      'ASYNC_IN_SYNC_GATE',
    );
    expect(ran).toBe(true);
    expect(err.message).toContain('key.withAsync()');
    expect(rt.probe(region, 'r')).toBe(false); // the gate is closed
    expect(rt.stats().gates - before.gates).toBe(1);
    expect(key.destroyed).toBe(false);
  });

  it('gates nested deeper than 32 throw GATE_DEPTH and every outer gate still closes', () => {
    // One key, nested: on pku it pins a single hardware key however deep.
    const deep = rt.createKey({ name: 'deep' });
    const r = deep.alloc(4096);
    let depthReached = 0;
    const nest = (depth: number): void => {
      deep.with('r', () => {
        depthReached = depth;
        nest(depth + 1);
      });
    };
    const before = rt.stats();
    const err = expectVmpkError(() => nest(1), 'GATE_DEPTH');
    expect(err.message).toContain('32');
    expect(depthReached).toBe(32);
    expect(rt.stats().gates - before.gates).toBe(32);
    // Nothing stays open: no access left, and the key can be destroyed.
    expect(rt.probe(r, 'r')).toBe(false);
    deep.destroy();
  });

  it.runIf(onPku)('pku: nesting gates on more keys than hardware keys throws KEYS_EXHAUSTED', () => {
    const small = open({ maxHardwareKeys: 2 });
    try {
      const [a, b, c] = ['a', 'b', 'c'].map((name) => small.createKey({ name }));
      for (const k of [a!, b!, c!]) k.alloc(4096);
      const err = expectVmpkError(() => a!.with('r', () => b!.with('r', () => c!.with('r', noop))), 'KEYS_EXHAUSTED');
      expect(err.message).toContain('maxHardwareKeys');
      // The third key works once the others are closed.
      expect(c!.with('r', () => 3)).toBe(3);
    } finally {
      small.close();
    }
  });

  it('forcing pku: UNSUPPORTED_BACKEND where the CPU or kernel lacks it (never SIGILL), else a pku runtime', () => {
    const before = rt.stats();
    if (pkuSupported()) {
      const forced = open({ backend: 'pku' });
      expect(forced.backend).toBe('pku');
      forced.close();
    } else {
      const err = expectVmpkError(() => open({ backend: 'pku' }), 'UNSUPPORTED_BACKEND');
      expect(err.message).toContain("'mprotect'");
    }
    expect(rt.stats()).toEqual(before);
  });

  it('failed open() calls leak no runtime: 8 open at once still work, the 9th is TOO_MANY', () => {
    // rt and other are open: six more fit.
    const more: Runtime[] = [];
    try {
      for (let i = 0; i < 6; i++) more.push(open());
      const err = expectVmpkError(() => open(), 'TOO_MANY');
      expect(err.message).toContain('8');
    } finally {
      for (const r of more) r.close();
    }
    // The refused open() took no slot either.
    const again = Array.from({ length: 6 }, () => open());
    for (const r of again) r.close();
  });
});
