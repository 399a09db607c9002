// Stale views: a Uint8Array kept from region.bytes past free(), destroy() or
// close() must not reach whoever later gets the pages. Node 22+ detaches the
// views vmpk made (transfer(0): no read of the protected memory); where a view
// cannot be detached (Node 20, or a view vmpk does not track) the core keeps
// the destroyed window out of reuse (the quarantine) until the view is
// released. Both backends: the host runs it on mprotect, the guest on pku.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { getNative } from '../src/native.js';
import { DETACHES_VIEWS } from '../src/region.js';
import { backend, openRuntime } from './helpers/vmpk.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const canDetach = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function';
// Each Node line registers only the tests that apply to it: in the guest a
// skipped test counts as failed.
const itDetach = canDetach ? it : (() => undefined) as unknown as typeof it;
const itNoDetach = canDetach ? (() => undefined) as unknown as typeof it : it;
const quarantined = () => getNative().viewHold(0n, 0);

// The attacker keeps a view of key A's region, destroys A, and a later key
// B, which everyone may read, puts its secret in whatever window it gets.
// An aliasing view would then read B's secret with no fault.
const ATTACK = `
import { open } from './dist/index.js';
const rt = open();
const a = rt.createKey({ name: 'a' });
const ra = a.alloc(4096);
a.with('rw', () => ra.bytes.fill(1));
const kept = ra.bytes;
a.destroy();
const b = rt.createKey({ name: 'b' });
const rb = b.alloc(4096);
b.with('rw', () => rb.bytes.fill(0x5a));
b.protect('r');
console.log('same window: ' + (rb.address === ra.address ? 'yes' : 'no'));
console.log('probe: ' + rt.probe(ra, 'r'));
console.log('length: ' + kept.length);
console.log('read: ' + b.with('r', () => kept[0]));
`;

function runAttack(): { lines: string[]; stderr: string; status: number | null; signal: NodeJS.Signals | null } {
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', ATTACK], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  return { lines: child.stdout.split('\n').filter((l) => l !== ''), stderr: child.stderr, status: child.status, signal: child.signal };
}

describe(`stale views (${backend} backend, Node ${process.versions.node})`, () => {
  it('DETACHES_VIEWS is true exactly where ArrayBuffer.prototype.transfer exists (Node 22+)', () => {
    expect(DETACHES_VIEWS).toBe(canDetach);
  });

  itDetach('Node 22+: a view kept past destroy() is detached, and the next key gets the window without the view reaching its secret', () => {
    const o = runAttack();
    expect(o.signal, o.stderr).toBe(null);
    expect(o.status, o.stderr).toBe(0);
    expect(o.lines).toEqual(['same window: yes', 'probe: false', 'length: 0', 'read: undefined']);
  });

  itNoDetach('Node 20: a view kept past destroy() cannot be detached; the window is quarantined, so the next key gets another and the kept view faults instead of reading its secret', () => {
    const o = runAttack();
    expect(o.lines).toEqual(['same window: no', 'probe: false', 'length: 4096']);
    expect(o.signal).toBe('SIGSEGV');
    // The slot (and its name) went to b: the report names the slot, and says destroyed.
    expect(o.stderr).toMatch(/^vmpk: SIGSEGV: read of key #\d+ at 0x[0-9a-f]+, thread \d+: the key was destroyed$/m);
  });

  itDetach('Node 22+: free() detaches the region\'s view: a kept Uint8Array has length 0 and its buffer throws TypeError', () => {
    const rt = openRuntime();
    const k = rt.createKey();
    const r = k.alloc(4096);
    const kept = r.bytes;
    const sub = kept.subarray(8, 16);
    r.free();
    expect(kept.length).toBe(0);
    expect(sub.length).toBe(0);
    expect(kept.buffer.byteLength).toBe(0);
    expect(() => new DataView(kept.buffer)).toThrow(TypeError);
    expect(quarantined()).toBe(0);
  });

  itDetach('Node 22+: destroy() and close() detach every view of the key or runtime', () => {
    const rt = openRuntime();
    const k1 = rt.createKey();
    const k2 = rt.createKey();
    const v1 = k1.alloc(4096).bytes;
    const v2 = k2.alloc(8192).bytes;
    k1.destroy();
    expect([v1.length, v2.length]).toEqual([0, 8192]);
    rt.close();
    expect(v2.length).toBe(0);
    expect(quarantined()).toBe(0);
  });

  it('a view vmpk cannot detach keeps the destroyed window out of reuse until it is released; then the window is reused', () => {
    const rt = openRuntime();
    const n = getNative();
    const a = rt.createKey();
    const ra = a.alloc(4096);
    // What another thread's view (or Node 20's) amounts to: a hold nothing here can detach.
    expect(n.viewHold(ra.address, 1)).toBe(0);
    const before = quarantined();
    a.destroy();
    expect(quarantined()).toBe(before + 1);
    expect(rt.probe(ra, 'r')).toBe(false);
    const b = rt.createKey();
    const rb = b.alloc(4096);
    expect(rb.address).not.toBe(ra.address);
    expect(n.viewHold(ra.address, 1)).toBe(-2); // no new view of a destroyed window
    expect(n.viewHold(ra.address, -1)).toBe(0);
    expect(quarantined()).toBe(before);
    expect(n.viewHold(ra.address, -1)).toBe(-1); // more releases than holds
    const c = rt.createKey();
    expect(c.alloc(4096).address).toBe(ra.address);
    expect(rt.probe(ra, 'r')).toBe(false); // still the destroyed key's region, whoever holds the window
  });

  itNoDetach('Node 20: free() and destroy() leave the view attached; destroy() quarantines the window while it lives', () => {
    const rt = openRuntime();
    const a = rt.createKey();
    const r = a.alloc(4096);
    const kept = r.bytes;
    const before = quarantined();
    r.free();
    expect(kept.length).toBe(4096); // same key: its later regions (same domain)
    expect(quarantined()).toBe(before);
    a.destroy();
    expect(quarantined()).toBe(before + 1);
    expect(kept.length).toBe(4096);
  });
});
