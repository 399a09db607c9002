// key.with() calls the core by a 32-bit gate index (vmpk_gate_index,
// vmpk_enter_r/_rw, vmpk_leave_index) where the key has one, passed through
// the calling thread's mailbox (vmpk_mailbox_*). The index packs
// the handle's runtime id, slot + 1 and generation exactly, so a stale index
// is refused as a stale handle is, and opens no later key of its slot.
import koffi from 'koffi';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { E_GATE_ORDER, E_INVALID, E_STALE } from '../src/codes.js';
import { getNative, libraryPath } from '../src/native.js';
import { openRuntime } from './helpers/vmpk.js';

describe('gate indexes', () => {
  const n = getNative(libraryPath());

  it('pack runtime id, generation and slot + 1 of the handle, each whole', () => {
    const rt = openRuntime();
    const key = rt.createKey();
    const h = key.handle().key;
    const slot1 = h % 2 ** 24;
    const gen = Math.floor(h / 2 ** 24) % 2 ** 21;
    const id = Math.floor(h / 2 ** 45);
    expect(n.gateIndex(h)).toBe(((id << 29) | (gen << 20) | slot1) >>> 0);
    // past 9 bits of generation or 20 of slot: no index, the handle is used
    expect(n.gateIndex(id * 2 ** 45 + 512 * 2 ** 24 + slot1)).toBe(0);
    expect(n.gateIndex(id * 2 ** 45 + gen * 2 ** 24 + 2 ** 20)).toBe(0);
    expect(n.gateIndex(0)).toBe(0);
  });

  it('key.with() works through them: writes in rw, reads in r, counted as gates', () => {
    const rt = openRuntime();
    const key = rt.createKey();
    const region = key.alloc(4096);
    const before = rt.stats();
    key.with('rw', () => {
      region.bytes[0] = 42;
    });
    expect(key.with('r', () => region.bytes[0])).toBe(42);
    const after = rt.stats();
    expect(after.gates - before.gates).toBe(2);
    expect(n.gateIndex(key.handle().key)).not.toBe(0);
  });

  it('a stale index is refused after its key is destroyed and its slot reused; forged ones open nothing', () => {
    const rt = openRuntime();
    const old = rt.createKey();
    const oldHandle = old.handle().key;
    const oldIx = n.gateIndex(oldHandle);
    old.destroy();
    const next = rt.createKey();
    const nextHandle = next.handle().key;
    expect(nextHandle % 2 ** 24).toBe(oldHandle % 2 ** 24); // the same slot, a later generation
    const nextIx = n.gateIndex(nextHandle);
    expect(nextIx).not.toBe(oldIx);
    expect(n.enterRw(oldIx)).toBe(E_STALE);
    expect(n.enterR(oldIx)).toBe(E_STALE);
    expect(n.leaveIndex(oldIx)).toBe(E_GATE_ORDER);
    for (const forged of [(nextIx + 2 ** 20) >>> 0, (nextIx - 2 ** 20) >>> 0, (nextIx ^ (1 << 29)) >>> 0, nextIx + 1]) {
      expect(n.enterRw(forged)).toBeLessThan(0);
    }
    expect(n.enterRw(0)).toBe(E_INVALID);
    expect(rt.stats().gates).toBe(0);
    expect(next.with('rw', () => 7)).toBe(7);
  });

  it("each thread's gates go through a mailbox of its own: a worker's 20,000 with() calls beside the main thread's change none of its results", async () => {
    const rt = openRuntime();
    const mine = rt.createKey();
    mine.alloc(4096);
    const theirs = rt.createKey();
    theirs.alloc(4096);
    const ctrl = new Int32Array(new SharedArrayBuffer(8));
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      Promise.all([import(workerData.dist), import(workerData.native), import('koffi')]).then(([{ adopt }, { getNative }, koffi]) => {
        const key = adopt(workerData.key);
        const region = key.regions[0];
        const ctrl = new Int32Array(workerData.ctrl);
        const box = koffi.default.address(getNative().raw.vmpk_gate_mailbox());
        Atomics.store(ctrl, 0, 1);
        Atomics.notify(ctrl, 0);
        let wrong = 0;
        for (let i = 0; i < 20000; i++) {
          key.with('rw', () => { region.bytes[0] = i & 0xff; });
          wrong += key.with('r', () => region.bytes[0]) === (i & 0xff) ? 0 : 1;
        }
        parentPort.postMessage({ box: String(box), wrong });
      });`;
    const w = new Worker(code, {
      eval: true,
      workerData: { dist: new URL('../dist/index.js', import.meta.url).href, native: new URL('../dist/native.js', import.meta.url).href, key: theirs.handle(), ctrl: ctrl.buffer },
    });
    const done = once(w, 'message');
    if (Atomics.wait(ctrl, 0, 0, 120_000) === 'timed-out') throw new Error('the worker never started');
    let wrong = 0;
    const region = mine.regions[0]!;
    for (let i = 0; i < 20000; i++) {
      mine.with('rw', () => {
        region.bytes[1] = i & 0xff;
      });
      wrong += mine.with('r', () => region.bytes[1]) === (i & 0xff) ? 0 : 1;
    }
    const [reply] = (await done) as [{ box: string; wrong: number }];
    await w.terminate();
    expect(wrong).toBe(0);
    expect(reply.wrong).toBe(0);
    expect(reply.box).not.toBe(String(koffi.address(n.raw.vmpk_gate_mailbox())));
  });
});
