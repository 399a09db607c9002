// What the API does, on the backend this process runs on ($VMPK_BACKEND):
// gates, nesting, probes, protect, destroy, free and reuse, close.
import { describe, expect, it } from 'vitest';
import { Key, Region, VmpkError } from '../src/index.js';
import { backend, expectVmpkError, onPku, openRuntime } from './helpers/vmpk.js';

describe(`behaviour (${backend} backend)`, () => {
  it('describes itself: backend, capabilities, stats fields', () => {
    const rt = openRuntime();
    expect(rt.backend).toBe(backend);
    expect(rt.closed).toBe(false);
    const c = rt.capabilities;
    expect(c.threadLocal).toBe(rt.backend === 'pku');
    expect(c.pageSize).toBeGreaterThanOrEqual(4096);
    expect(c.pageSize & (c.pageSize - 1)).toBe(0);
    expect(c.windowSize).toBe(1 << 20);
    if (rt.backend === 'pku') {
      expect(c.hardwareKeys).toBeGreaterThanOrEqual(1);
      expect(c.hardwareKeys).toBeLessThanOrEqual(15);
    } else {
      expect(c.hardwareKeys).toBe(0);
    }
    expect(Object.isFrozen(c)).toBe(true);
    const s = rt.stats();
    expect(Object.keys(s).sort()).toEqual(
      [
        'gates', 'hits', 'misses', 'evictions', 'pkeyMprotectCalls', 'mprotectCalls', 'syscalls', 'pkruWrites',
        'faultsRepaired', 'shootdowns', 'liveVkeys', 'residentVkeys', 'hwKeysHeld', 'regions', 'mappedBytes', 'metadataBytes',
        'shootdownSignals', 'pins', 'metaPkruWrites', 'metaMprotectCalls',
      ].sort(),
    );
    for (const v of Object.values(s)) expect(Number.isSafeInteger(v) && v >= 0).toBe(true);
    expect(s.liveVkeys).toBe(0);
    expect(s.regions).toBe(0);
    expect(rt.stats()).not.toBe(s); // a fresh object each time
  });

  it('windowSize rounds up to whole MiB, per runtime and per key', () => {
    const rt = openRuntime({ windowSize: 3 * 2 ** 20 - 1 });
    expect(rt.capabilities.windowSize).toBe(3 * 2 ** 20);
    const small = rt.createKey({ windowSize: 1 });
    expectVmpkError(() => small.alloc(2 ** 20 + 1), 'WINDOW_FULL');
    expect(small.alloc(2 ** 20).mappedSize).toBe(2 ** 20);
    const dflt = rt.createKey();
    expect(dflt.alloc(3 * 2 ** 20).size).toBe(3 * 2 ** 20);
    const big = rt.createKey({ windowSize: 8 * 2 ** 20 });
    expect(big.alloc(8 * 2 ** 20).size).toBe(8 * 2 ** 20);
  });

  it('allocates zeroed, page-aligned regions; writes and reads them inside gates', () => {
    const rt = openRuntime();
    const key = rt.createKey({ name: 'data' });
    expect(key.name).toBe('data');
    expect(key.runtime).toBe(rt);
    expect(key.access).toBe('none');
    const r = key.alloc(10_000);
    expect(r).toBeInstanceOf(Region);
    expect(r.key).toBe(key);
    expect(r.size).toBe(10_000);
    expect(r.mappedSize).toBe(Math.ceil(10_000 / rt.capabilities.pageSize) * rt.capabilities.pageSize);
    expect(typeof r.address).toBe('bigint');
    expect(r.address % BigInt(rt.capabilities.pageSize)).toBe(0n);
    expect(r.bytes).toBe(r.bytes); // made once
    expect(r.bytes.length).toBe(10_000);
    expect(key.with('r', () => r.bytes.every((b) => b === 0))).toBe(true);
    key.with('rw', () => {
      for (let i = 0; i < r.size; i++) r.bytes[i] = (i * 31) & 0xff;
    });
    const sum = key.with('r', () => r.bytes.reduce((a, b, i) => a + (b === ((i * 31) & 0xff) ? 1 : 0), 0));
    expect(sum).toBe(10_000);
    const s = rt.stats();
    expect(s.liveVkeys).toBe(1);
    expect(s.regions).toBe(1);
    expect(s.mappedBytes).toBe(r.mappedSize);
  });

  it('an unnamed key has name null', () => {
    const rt = openRuntime();
    expect(rt.createKey().name).toBe(null);
    expect(rt.createKey({ name: '' }).name).toBe('');
  });

  it("with() returns fn's value and passes the same exception through; the gate closes either way", () => {
    const rt = openRuntime();
    const key = rt.createKey();
    const r = key.alloc(4096);
    const value = { v: 1 };
    expect(key.with('r', () => value)).toBe(value);
    expect(key.with('rw', () => undefined)).toBe(undefined);
    const boom = new Error('boom');
    let inside = false;
    expect(() =>
      key.with('rw', () => {
        inside = rt.probe(r, 'rw');
        throw boom;
      }),
    ).toThrow(boom);
    expect(inside).toBe(true);
    expect(rt.probe(r, 'r')).toBe(false);
    expect(rt.stats().gates).toBe(3);
    // Still usable, and destroyable (no gate left open on it).
    expect(key.with('r', () => r.bytes[0])).toBe(0);
    key.destroy();
  });

  it('refuses a promise-returning fn after closing its gate', async () => {
    const rt = openRuntime();
    const key = rt.createKey();
    const r = key.alloc(4096);
    let sawAccess: boolean | undefined;
    let after: boolean | undefined;
    const err = expectVmpkError(
      () =>
        // @ts-expect-error key.with() refuses a promise-returning fn at compile time too
        key.with('rw', async () => {
          sawAccess = rt.probe(r, 'rw');
          await null;
          after = rt.probe(r, 'rw');
        }),
      'ASYNC_IN_SYNC_GATE',
    );
    expect(err.message).toContain('key.withAsync()');
    expect(sawAccess).toBe(true);
    expect(rt.probe(r, 'rw')).toBe(false);
    await new Promise((resolve) => setImmediate(resolve));
    expect(after).toBe(false); // the rest ran outside the gate
    key.destroy();
  });

  it('probe() is true inside a gate and false outside, for a key whose access is none', () => {
    const rt = openRuntime();
    const key = rt.createKey();
    const r = key.alloc(8192);
    expect(rt.probe(r, 'r')).toBe(false);
    expect(rt.probe(r, 'rw')).toBe(false);
    expect(rt.probe(r.address + 4096n, 'r')).toBe(false);
    key.with('r', () => {
      expect(rt.probe(r, 'r')).toBe(true);
      expect(rt.probe(r, 'r', 8191)).toBe(true);
      expect(rt.probe(r, 'rw')).toBe(false);
    });
    key.with('rw', () => {
      expect(rt.probe(r, 'r')).toBe(true);
      expect(rt.probe(r, 'rw', 100)).toBe(true);
    });
    expect(rt.probe(r, 'r')).toBe(false);
  });

  it('probe() tells the truth for addresses that are not vmpk memory', () => {
    const rt = openRuntime();
    expect(rt.probe(0n, 'r')).toBe(false);
    expect(rt.probe(8n, 'rw')).toBe(false);
  });

  it('a gate opens its own key only', () => {
    const rt = openRuntime();
    const a = rt.createKey({ name: 'a' });
    const b = rt.createKey({ name: 'b' });
    const ra = a.alloc(4096);
    const rb = b.alloc(4096);
    a.with('rw', () => {
      expect(rt.probe(ra, 'rw')).toBe(true);
      expect(rt.probe(rb, 'r')).toBe(false);
      b.with('r', () => {
        expect(rt.probe(rb, 'r')).toBe(true);
        expect(rt.probe(rb, 'rw')).toBe(false);
        expect(rt.probe(ra, 'rw')).toBe(true);
      });
      expect(rt.probe(rb, 'r')).toBe(false);
    });
    expect(rt.probe(ra, 'r')).toBe(false);
  });

  it('nesting gates on one key: the inner end restores the outer access', () => {
    const rt = openRuntime();
    const key = rt.createKey();
    const r = key.alloc(4096);
    key.with('r', () => {
      expect(rt.probe(r, 'rw')).toBe(false);
      key.with('rw', () => {
        r.bytes[0] = 9;
        expect(rt.probe(r, 'rw')).toBe(true);
      });
      expect(rt.probe(r, 'r')).toBe(true);
      expect(rt.probe(r, 'rw')).toBe(false);
      expect(r.bytes[0]).toBe(9);
    });
    expect(rt.probe(r, 'r')).toBe(false);
  });

  it.runIf(onPku)('pku: an inner gate that grants less narrows this thread, and its end restores the outer gate', () => {
    const rt = openRuntime();
    const key = rt.createKey();
    const r = key.alloc(4096);
    key.with('rw', () => {
      key.with('r', () => {
        expect(rt.probe(r, 'r')).toBe(true);
        expect(rt.probe(r, 'rw')).toBe(false);
      });
      expect(rt.probe(r, 'rw')).toBe(true);
    });
    expect(rt.probe(r, 'r')).toBe(false);
  });

  it('mprotect: gates are process-wide while open, so an inner narrower gate cannot narrow the outer one', () => {
    const rt = openRuntime({ backend: 'mprotect' });
    expect(rt.capabilities.threadLocal).toBe(false);
    const key = rt.createKey();
    const r = key.alloc(4096);
    key.with('rw', () => {
      key.with('r', () => {
        expect(rt.probe(r, 'rw')).toBe(true);
      });
      expect(rt.probe(r, 'rw')).toBe(true);
    });
    expect(rt.probe(r, 'r')).toBe(false);
  });

  it("protect() sets the process-wide access: 'r' reads without a gate, writes need one", () => {
    const rt = openRuntime();
    const key = rt.createKey();
    const r = key.alloc(4096);
    key.with('rw', () => r.bytes.fill(5));
    key.protect('r');
    expect(key.access).toBe('r');
    expect(rt.probe(r, 'r')).toBe(true);
    expect(rt.probe(r, 'rw')).toBe(false);
    expect(r.bytes[100]).toBe(5); // outside any gate
    key.with('rw', () => {
      expect(rt.probe(r, 'rw')).toBe(true);
      r.bytes[100] = 6;
    });
    expect(rt.probe(r, 'rw')).toBe(false);
    expect(r.bytes[100]).toBe(6);
    key.protect('rw');
    expect(key.access).toBe('rw');
    expect(rt.probe(r, 'rw')).toBe(true);
    r.bytes[0] = 1;
    key.protect('none');
    expect(key.access).toBe('none');
    expect(rt.probe(r, 'r')).toBe(false);
    expect(key.with('r', () => [r.bytes[0], r.bytes[100]])).toEqual([1, 6]);
  });

  it("createKey({ access: 'r' }) makes a key readable everywhere from the start", () => {
    const rt = openRuntime();
    const key = rt.createKey({ access: 'r' });
    expect(key.access).toBe('r');
    const r = key.alloc(4096);
    expect(rt.probe(r, 'r')).toBe(true);
    expect(rt.probe(r, 'rw')).toBe(false);
    expect(r.bytes[0]).toBe(0);
  });

  it('destroy() takes the memory away: probe false, regions freed, counts down', () => {
    const rt = openRuntime();
    const key = rt.createKey({ access: 'rw' });
    const r1 = key.alloc(4096);
    const r2 = key.alloc(4096);
    expect(rt.probe(r1, 'rw')).toBe(true);
    const before = rt.stats();
    key.destroy();
    expect(key.destroyed).toBe(true);
    expect(r1.freed).toBe(true);
    expect(r2.freed).toBe(true);
    expect(rt.probe(r1, 'r')).toBe(false);
    expect(rt.probe(r2.address, 'r')).toBe(false);
    const after = rt.stats();
    expect(after.liveVkeys).toBe(before.liveVkeys - 1);
    expect(after.regions).toBe(before.regions - 2);
    expect(after.mappedBytes).toBe(before.mappedBytes - r1.mappedSize - r2.mappedSize);
  });

  it('free() then alloc() reuses the pages, zeroed', () => {
    const rt = openRuntime();
    const key = rt.createKey();
    const r = key.alloc(4096);
    const keep = key.alloc(4096);
    key.with('rw', () => {
      r.bytes.fill(0xaa);
      keep.bytes.fill(0xbb);
    });
    const address = r.address;
    r.free();
    expect(r.freed).toBe(true);
    expect(r.address).toBe(address);
    expect(rt.stats().regions).toBe(1);
    const again = key.alloc(4096);
    expect(again.address).toBe(address); // first fit: the freed pages
    expect(rt.stats().regions).toBe(2);
    key.with('r', () => {
      expect(again.bytes.every((b) => b === 0)).toBe(true);
      expect(keep.bytes.every((b) => b === 0xbb)).toBe(true);
    });
    expect(rt.probe(again, 'r')).toBe(false);
  });

  it('close() destroys everything and is idempotent', () => {
    const rt = openRuntime();
    const key = rt.createKey();
    const r = key.alloc(4096);
    rt.close();
    expect(rt.closed).toBe(true);
    expect(key.destroyed).toBe(true);
    expect(r.freed).toBe(true);
    rt.close(); // no-op
    expect(rt.closed).toBe(true);
    expectVmpkError(() => rt.stats(), 'RUNTIME_CLOSED');
  });

  it('close() inside a gate throws KEY_BUSY and leaves the runtime working', () => {
    const rt = openRuntime();
    const key = rt.createKey();
    const r = key.alloc(4096);
    const err = expectVmpkError(() => key.with('rw', () => rt.close()), 'KEY_BUSY');
    expect(err.message).toContain('runtime.close()');
    expect(rt.closed).toBe(false);
    expect(key.with('rw', () => (r.bytes[0] = 3))).toBe(3);
  });

  it('errors are VmpkError instances with a stable code', () => {
    const rt = openRuntime();
    const err = expectVmpkError(() => rt.createKey({ access: 'x' as never }), 'INVALID_ARGUMENT');
    expect(err).toBeInstanceOf(VmpkError);
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('VmpkError');
    expect(err.stack).toContain('behaviour.test.ts');
  });

  it('exports Key and Region for instanceof', () => {
    const rt = openRuntime();
    const key = rt.createKey();
    expect(key).toBeInstanceOf(Key);
    expect(key.alloc(1)).toBeInstanceOf(Region);
  });
});
