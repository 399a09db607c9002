// The pku backend's hardware keys: what happens when they run out, and how
// closed runtimes hand theirs on. Runs where open() picks pku (the QEMU guest,
// VMPK_BACKEND=pku); skipped elsewhere.
import { describe, expect, it } from 'vitest';
import { pkuSupported } from '../src/index.js';
import { expectVmpkError, onPku, openRuntime } from './helpers/vmpk.js';

describe.runIf(onPku)('pku hardware keys', () => {
  it('while one runtime holds every hardware key, pku stays supported; another runtime gets NO_HARDWARE_KEYS at its first gate, then the keys once the first closes', () => {
    const hog = openRuntime();
    expect(hog.backend).toBe('pku');
    const keys = Array.from({ length: 16 }, (_, i) => hog.createKey({ name: `hog${i}` }));
    for (const k of keys) {
      k.alloc(4096);
      k.with('r', () => undefined); // each binds a hardware key until none is left
    }
    const held = hog.stats().hwKeysHeld;
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(15);

    expect(pkuSupported()).toBe(true);
    const second = openRuntime({ backend: 'pku' });
    expect(second.backend).toBe('pku');
    const k = second.createKey({ name: 'late' });
    const r = k.alloc(4096);
    const err = expectVmpkError(() => k.with('r', () => undefined), 'NO_HARDWARE_KEYS');
    expect(err.message).toContain("key.with('r')");
    expect(second.probe(r, 'r')).toBe(false);

    hog.close(); // its hardware keys go to later runtimes of the process
    expect(k.with('rw', () => (r.bytes[0] = 7))).toBe(7);
    expect(second.stats().hwKeysHeld).toBe(1);
  });

  it('hardware keys of a closed runtime are reused by the next one (no pkey_alloc)', () => {
    const first = openRuntime({ maxHardwareKeys: 2 });
    const a = first.createKey();
    a.alloc(4096);
    a.with('r', () => undefined);
    first.close();
    const next = openRuntime({ maxHardwareKeys: 2 });
    const b = next.createKey();
    b.alloc(4096);
    const before = next.stats();
    b.with('r', () => undefined);
    const after = next.stats();
    expect(after.misses - before.misses).toBe(1);
    // One pkey_mprotect to tag b's window and no pkey_alloc. Taking over a
    // used pkey may revoke other threads' stale bits first (a shootdown:
    // one signal per thread), which are syscalls too.
    expect(after.pkeyMprotectCalls - before.pkeyMprotectCalls).toBe(1);
    expect(after.syscalls - before.syscalls - (after.shootdownSignals - before.shootdownSignals)).toBe(1);
  });
});
