// Attacks on vmpk's own state (invariant 6: nothing that decides which pages
// a call touches is taken from memory outside the write-protected metadata
// unchecked). The attacker is native/build/attack (test/fixtures/attacks/
// attack.c), one attack per child process. Each makes a stray write into a
// structure vmpk keeps (a region list, a key's window, a name) and then uses
// vmpk's own calls, and asserts the other key's secret is neither read nor
// changed. With PKU the write itself dies by SIGSEGV with vmpk's metadata
// report, before any byte moves. Without PKU the per-key tables stay
// writable (docs/design.md): the tests there show which forgeries the
// consistency checks still stop and which get through.
import { describe, expect, it } from 'vitest';
import { getNative } from '../src/native.js';
import { runAttacker, type Outcome } from './helpers/attack.js';
import { onPku } from './helpers/vmpk.js';

function attack(name: string): Outcome {
  return runAttacker([name]);
}

const META_REPORT = /^vmpk: SIGSEGV: write to vmpk metadata at 0x[0-9a-f]+, thread \d+: only vmpk's own calls may change it$/m;

/** The forging write itself died with the metadata report: nothing after it ran. */
function expectStoppedAtTheWrite(o: Outcome, forging: RegExp): void {
  expect(o.signal, o.stderr).toBe('SIGSEGV');
  expect(o.lines['open']).toBe('ok');
  expect(o.lines['forging']).toMatch(forging);
  expect(o.stderr).toMatch(META_REPORT);
  for (const k of ['call', 'foreign', 'leaked', 'free', 'secret', 'content']) expect(o.lines[k], k).toBe(undefined);
}

/** The report line, with no control byte of a forged name in it. */
function expectEscapedReport(o: Outcome): string {
  expect(o.signal, o.stderr).toBe('SIGSEGV');
  const line = o.stderr.split('\n').find((l) => l.startsWith('vmpk: SIGSEGV: read of key '));
  expect(line, o.stderr).toBeDefined();
  // eslint-disable-next-line no-control-regex
  expect(o.stderr).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f]/);
  return line!;
}

describe.skipIf(!onPku)('attacks on unprotected state (pku backend: the metadata pkey)', () => {
  it("a forged entry in a key's region list (first fit steered onto another key's page, then read): the write dies, no byte leaks", () => {
    expectStoppedAtTheWrite(attack('region-alloc'), /^\d+$/);
  });

  it("a forged entry in a key's region list, then free() of the foreign page: the write dies, the other key's page is not discarded", () => {
    expectStoppedAtTheWrite(attack('region-free'), /^\d+$/);
  });

  it("a key's window moved onto another key's (its slot's first granule): the write dies", () => {
    expectStoppedAtTheWrite(attack('region-window'), /^window$/);
  });

  it("a key's name pointer aimed at terminal control sequences: the write dies", () => {
    expectStoppedAtTheWrite(attack('name-pointer'), /^name$/);
  });
});

describe('attacks on unprotected state (both backends)', () => {
  it("a key's name bytes (in malloc) overwritten with control sequences: the fault report escapes every byte", () => {
    const o = attack('name-bytes');
    expect(o.lines['call']).toBe('ok');
    const line = expectEscapedReport(o);
    expect(line).toContain('read of key "\\x1b\\x5b\\x32\\x4a\\x07\\x21" at 0x');
  });

  it('every field of a handle forged (runtime id, slot, generation, high bits): every entry point refuses, the secret stays hidden and intact', () => {
    const o = attack('forged-handle');
    expect(o.signal, o.stderr).toBe(null);
    expect(o.status, o.stderr).toBe(0);
    expect(o.lines).toMatchObject({ open: 'ok', call: 'refused', secret: 'hidden', content: 'intact' });
  });

  it("a destroyed key's region probed after a later key took its window: vmpk_probe_key answers 0, the old handle opens nothing", () => {
    const o = attack('probe-reuse');
    expect(o.signal, o.stderr).toBe(null);
    expect(o.status, o.stderr).toBe(0);
    expect(o.lines).toMatchObject({
      open: 'ok',
      reused: 'yes', // the window did go to the later key
      raw: '1', // the address alone: the later key, readable by all
      probe: '0',
      begin: 'the key was destroyed or does not belong to this runtime',
      secret: 'hidden',
      content: 'intact',
    });
  });
});

describe('the shared library\'s own pointers (both backends)', () => {
  it("libvmpk.so's GOT (the libc functions vmpk calls with its metadata open): every slot read-only after load, none can be redirected", () => {
    const o = attack('got-write');
    expect(o.signal, o.stderr).toBe(null);
    expect(o.status, o.stderr).toBe(0);
    expect(o.lines).toMatchObject({ call: 'ok', slots: 'found', got: 'readonly', secret: 'hidden', content: 'intact' });
  });
});

// Registered only without PKU: in the guest a skipped test counts as failed.
(onPku ? () => undefined : describe)('attacks on unprotected state without PKU (mprotect: the per-key tables stay writable)', () => {
  it('a forged region list: the window bound still refuses a region outside the key\'s window', () => {
    const o = attack('region-alloc');
    expect(o.signal, o.stderr).toBe(null);
    expect(o.lines).toMatchObject({ call: 'EINVAL', foreign: 'no', leaked: 'no', secret: 'hidden', content: 'intact' });
    const f = attack('region-free');
    expect(f.lines).toMatchObject({ call: 'EINVAL', foreign: 'no', secret: 'hidden', content: 'intact' });
  });

  it("a forged window (the slot's first granule): NOT stopped without PKU, the other key's secret leaks (docs/design.md, docs/security.md)", () => {
    const o = attack('region-window');
    expect(o.signal, o.stderr).toBe(null);
    expect(o.lines).toMatchObject({ call: 'ok', foreign: 'yes', leaked: 'yes' });
  });

  it('a forged name pointer: NOT stopped without PKU, but the report escapes what it points at', () => {
    const line = expectEscapedReport(attack('name-pointer'));
    expect(line).toContain('read of key "\\x1b\\x5d\\x30\\x3b');
  });
});

describe('the native entry points JavaScript reaches (both backends)', () => {
  it("probeKey (vmpk_probe_key) through koffi: a destroyed key's region answers 0 after a later key took the window; probe (the address alone) answers for the later key", () => {
    const n = getNative();
    const rt: [number] = [0];
    expect(n.open({ backend: 0, maxHwKeys: 0, windowSize: 0, harden: 0 }, rt)).toBe(0);
    const a: [number] = [0], b: [number] = [0];
    const pa: [bigint] = [0n], pb: [bigint] = [0n];
    // A window size no other key uses: the freed window is the only one of its size.
    expect(n.keyCreate(rt[0], 'old', 3, 5 << 20, a)).toBe(0);
    expect(n.alloc(rt[0], a[0], 4096, pa)).toBe(0);
    expect(n.probeKey(a[0], pa[0], 3)).toBe(1); // VMPK_RW, the key's access
    expect(n.probeKey(a[0], pa[0] + (5n << 20n), 1)).toBe(-9); // VMPK_E_NOT_REGION: past the window
    expect(n.probeKey(0, pa[0], 1)).toBe(-1); // VMPK_E_INVALID
    expect(n.keyDestroy(rt[0], a[0])).toBe(0);
    expect(n.keyCreate(rt[0], 'tenant', 3, 5 << 20, b)).toBe(0);
    expect(n.alloc(rt[0], b[0], 4096, pb)).toBe(0);
    expect(pb[0]).toBe(pa[0]);
    expect(n.probe(pa[0], 1)).toBe(1);
    expect(n.probeKey(b[0], pa[0], 1)).toBe(1);
    expect(n.probeKey(a[0], pa[0], 1)).toBe(0);
    expect(n.close(rt[0])).toBe(0);
  });
});
