// Threads: worker_threads sharing one runtime through handles, libuv pool
// threads (koffi async calls), and what each thread may access when.
//
// On pku a gate is thread-local: other threads see nothing of it. On
// mprotect (capabilities.threadLocal false) an open gate opens the pages to
// every thread, so the expectations below name both, exactly. protect() is
// process-wide on both: when it returns, every thread sees the new access.
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { adopt, type Key, type Region, type Runtime } from '../src/index.js';
import { getNative } from '../src/native.js';
import { CMD, ProbeWorker } from './helpers/threads.js';
import { backend, expectVmpkError, onPku, openRuntime } from './helpers/vmpk.js';

function setup(options?: Parameters<typeof openRuntime>[0]): { rt: Runtime; key: Key; region: Region } {
  const rt = openRuntime(options);
  const key = rt.createKey({ name: 'shared' });
  const region = key.alloc(4096);
  return { rt, key, region };
}

/** vmpk_probe on a libuv pool thread. */
async function poolProbe(region: Region, access: 'r' | 'rw'): Promise<boolean> {
  return (await getNative().probeAsync(region.address, access === 'r' ? 1 : 3)) === 1;
}

describe(`handles and adopt() (${backend} backend)`, () => {
  it('runtime.handle() and key.handle() are plain data that survives structured cloning; adopting in the same thread gives the same Runtime', () => {
    const { rt, key, region } = setup();
    const h = structuredClone(key.handle());
    expect(h).toMatchObject({ vmpk: 1, kind: 'key', name: 'shared', access: 'none', regions: [{ address: region.address, size: 4096 }] });
    expect(h.runtime).toMatchObject({ vmpk: 1, kind: 'runtime', pid: process.pid });
    expect(adopt(structuredClone(rt.handle()))).toBe(rt);
    const k2 = adopt(h);
    expect(k2).not.toBe(key);
    expect(k2.runtime).toBe(rt);
    expect(k2.runtime.adopted).toBe(false);
    expect(k2.regions.map((r) => r.address)).toEqual([region.address]);
    k2.with('rw', () => (k2.regions[0]!.bytes[0] = 9));
    expect(key.with('r', () => region.bytes[0])).toBe(9);
  });

  it('key.regions lists the live regions allocated through the Key object', () => {
    const { key, region } = setup();
    const b = key.alloc(100);
    expect(key.regions).toEqual([region, b]);
    region.free();
    expect(key.regions).toEqual([b]);
    expect(key.handle().regions).toEqual([{ address: b.address, size: 100 }]);
    key.destroy();
    expect(key.regions).toEqual([]);
  });

  it('adopt() refuses what is not a handle, and handles of another process', () => {
    const { rt, key } = setup();
    for (const bad of [undefined, null, 1, 'x', {}, { vmpk: 1, kind: 'nope' }, { vmpk: 2, kind: 'runtime' }]) {
      expectVmpkError(() => adopt(bad as never), 'INVALID_ARGUMENT');
    }
    const other = { ...rt.handle(), pid: process.pid + 100000 };
    const err = expectVmpkError(() => adopt(other), 'INVALID_ARGUMENT');
    expect(err.message).toContain(`made in process ${process.pid + 100000}`);
    expectVmpkError(() => adopt({ ...key.handle(), key: -1 }), 'INVALID_ARGUMENT');
    expectVmpkError(() => adopt({ ...key.handle(), regions: [{ address: 1, size: 1 }] } as never), 'INVALID_ARGUMENT');
    expectVmpkError(() => adopt({ ...rt.handle(), state: new ArrayBuffer(4) } as never), 'INVALID_ARGUMENT');
  });

  it('a handle of a closed runtime cannot be adopted; a destroyed key cannot give one', () => {
    const { rt, key } = setup();
    const rh = rt.handle();
    const kh = key.handle();
    key.destroy();
    expectVmpkError(() => key.handle(), 'KEY_DESTROYED');
    const k2 = adopt(kh); // the handle itself is data: its use fails
    expectVmpkError(() => k2.with('r', () => 0), 'KEY_DESTROYED');
    expect(k2.destroyed).toBe(true);
    rt.close();
    expectVmpkError(() => adopt(rh), 'RUNTIME_CLOSED');
  });
});

describe(`worker_threads (${backend} backend)`, () => {
  it('a worker adopts a key and uses it in its own gates: reads what main wrote, writes back', async () => {
    const { key, region } = setup();
    key.with('rw', () => (region.bytes[0] = 42));
    const w = ProbeWorker.start(key.handle());
    expect(w.ready()).toBe(0); // its probe('r') at start: access none, no gate
    expect(w.call(CMD.gateSwap, 43)).toBe(42);
    expect(w.call(CMD.readInGate)).toBe(43);
    expect(key.with('r', () => region.bytes[0])).toBe(43);
    expect(w.call(CMD.probeR)).toBe(0); // outside its gates again
    expect(await w.stop()).toBe(0);
  });

  it(`a gate open on the main thread grants ${onPku ? 'nothing' : 'the access (mprotect: process-wide)'} to a worker`, async () => {
    const { rt, key, region } = setup();
    const w = ProbeWorker.start(key.handle());
    w.ready();
    const seen = key.with('rw', () => ({ main: rt.probe(region, 'rw'), r: w.call(CMD.probeR), rw: w.call(CMD.probeRW) }));
    expect(seen).toEqual(rt.capabilities.threadLocal ? { main: true, r: 0, rw: 0 } : { main: true, r: 1, rw: 1 });
    expect(w.call(CMD.probeR)).toBe(0);
    await w.stop();
  });

  it(`a gate open in a worker grants ${onPku ? 'nothing' : 'the access (mprotect: process-wide)'} to the main thread; close() and destroy() wait for it (KEY_BUSY)`, async () => {
    const { rt, key, region } = setup();
    const w = ProbeWorker.start(key.handle());
    w.ready();
    expect(w.call(CMD.hold)).toBe(1); // the worker is inside key.with('rw') now
    expect(rt.probe(region, 'r')).toBe(!rt.capabilities.threadLocal);
    expectVmpkError(() => key.destroy(), 'KEY_BUSY');
    expectVmpkError(() => rt.close(), 'KEY_BUSY');
    expect(w.call(CMD.release)).toBe(0);
    expect(rt.probe(region, 'r')).toBe(false);
    await w.stop();
    key.destroy();
  });

  it("protect() holds in every thread when it returns: after 'none' no worker can read; after 'r' every thread reads and none writes", async () => {
    const { rt, key, region } = setup();
    key.with('r', () => undefined); // resident (pku): grants to others are lazy, by fault repair
    const w = ProbeWorker.start(key.handle());
    w.ready();
    key.protect('rw');
    const repaired = rt.stats().faultsRepaired;
    expect(w.call(CMD.probeRW)).toBe(1);
    // pku: the worker's PKRU caught up in its fault handler; mprotect: the page protection allows it.
    expect(rt.stats().faultsRepaired - repaired).toBe(rt.backend === 'pku' ? 1 : 0);
    key.protect('none');
    expect([w.call(CMD.probeR), w.call(CMD.probeRW), rt.probe(region, 'r')]).toEqual([0, 0, false]);
    key.protect('r');
    expect([w.call(CMD.probeR), w.call(CMD.probeRW), rt.probe(region, 'r'), rt.probe(region, 'rw')]).toEqual([1, 0, true, false]);
    expect([await poolProbe(region, 'r'), await poolProbe(region, 'rw')]).toEqual([true, false]);
    key.protect('none');
    expect([w.call(CMD.probeR), await poolProbe(region, 'r'), rt.probe(region, 'r')]).toEqual([0, false, false]);
    await w.stop();
  });

  it("narrowing a key that a worker's gate pins: the worker keeps its gate's access, and no other thread keeps the old access", async () => {
    const { rt, key, region } = setup();
    key.protect('r');
    const w = ProbeWorker.start(key.handle());
    w.ready();
    expect(w.call(CMD.probeR)).toBe(1);
    expect(w.call(CMD.hold)).toBe(1);
    const before = rt.stats();
    key.protect('none');
    const after = rt.stats();
    expect(rt.probe(region, 'r')).toBe(!rt.capabilities.threadLocal);
    expect(await poolProbe(region, 'r')).toBe(!rt.capabilities.threadLocal);
    if (rt.backend === 'pku') {
      // The gate pins the key to its hardware key, and some thread may hold
      // bits for it from the old access: one shootdown, a signal per thread.
      expect(after.shootdowns - before.shootdowns).toBe(1);
      expect(after.shootdownSignals - before.shootdownSignals).toBeGreaterThanOrEqual(2);
    } else {
      expect(after.shootdowns - before.shootdowns).toBe(0);
    }
    w.call(CMD.release);
    expect(w.call(CMD.probeR)).toBe(0);
    await w.stop();
  });

  it('a worker started inside a gate holds its access only until the gate ends', async () => {
    const { rt, key, region } = setup();
    key.with('r', () => undefined); // resident (pku): its binding's own costs are paid
    const before = rt.stats();
    let w: ProbeWorker | undefined;
    const during = key.with('rw', () => {
      w = ProbeWorker.start(key.handle());
      return w.ready(); // the worker probed while the gate was still open
    });
    const after = rt.stats();
    // pku: a new thread copies its creator's PKRU, gate included (a documented
    // limit), until its first call into vmpk, which starts it with every key
    // of vmpk's closed (the worker's region.bytes asks vmpk_lookup before its
    // first probe), or the gate's end, which shoots the copy down. mprotect:
    // the gate is process-wide.
    expect(during).toBe(rt.backend === 'pku' ? 0 : 1);
    expect(w!.call(CMD.probeR)).toBe(0);
    expect(after.shootdowns - before.shootdowns).toBe(rt.backend === 'pku' ? 1 : 0);
    expect(rt.probe(region, 'r')).toBe(false);
    await w!.stop();
  });

  it('a worker uses an adopted key in its own async gates, which are its own: the main thread sees none of them', async () => {
    const { rt, key, region } = setup();
    key.with('rw', () => (region.bytes[0] = 10));
    const ctrl = new Int32Array(new SharedArrayBuffer(8));
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      import(workerData.dist).then(async ({ adopt }) => {
        const key = adopt(workerData.key);
        const region = key.regions[0];
        const ctrl = new Int32Array(workerData.ctrl);
        const seen = await key.withAsync('rw', async () => {
          const first = region.bytes[0];
          await null;
          region.bytes[0] = first + 1;
          Atomics.store(ctrl, 0, 1); // inside a piece of fn: its gate is open on this thread
          Atomics.notify(ctrl, 0);
          Atomics.wait(ctrl, 1, 0); // until main has probed
          return [first, key.runtime.probe(region, 'rw')];
        });
        parentPort.postMessage({ seen, after: key.runtime.probe(region, 'r'), pins: key.runtime.stats().pins });
      });`;
    const w = new Worker(code, { eval: true, workerData: { dist: new URL('../dist/index.js', import.meta.url).href, key: key.handle(), ctrl: ctrl.buffer } });
    const message = once(w, 'message');
    if (Atomics.wait(ctrl, 0, 0, 120_000) === 'timed-out') throw new Error('the worker never reached its async gate');
    const mainSees = rt.probe(region, 'r');
    Atomics.store(ctrl, 1, 1);
    Atomics.notify(ctrl, 1);
    const [result] = (await message) as [{ seen: [number, boolean]; after: boolean; pins: number }];
    await once(w, 'exit');
    expect(mainSees).toBe(!rt.capabilities.threadLocal);
    expect(result).toEqual({ seen: [10, true], after: false, pins: 0 });
    expect(key.with('r', () => region.bytes[0])).toBe(11);
  });

  it('after the main thread destroys a key, a worker using it gets KEY_DESTROYED; after close(), RUNTIME_CLOSED; an adopted runtime may not close (NOT_OWNER)', async () => {
    const { rt, key } = setup();
    const other = rt.createKey({ name: 'other' });
    other.alloc(4096);
    const w = ProbeWorker.start(key.handle(), other.handle());
    w.ready();
    expect(w.call(CMD.close)).toBe(-21); // NOT_OWNER
    expect(w.call(CMD.gateSwap, 1)).toBe(0);
    key.destroy();
    expect(w.call(CMD.gateSwap, 2)).toBe(-2); // KEY_DESTROYED
    expect(w.call(CMD.probeR)).toBe(0);
    expect(w.call(CMD.probeOtherR)).toBe(0);
    rt.close();
    expect(w.call(CMD.gateSwap, 3)).toBe(-20); // RUNTIME_CLOSED
    await w.stop();
  });
});

describe(`libuv pool threads (koffi async calls, ${backend} backend)`, () => {
  const fixture = fileURLToPath(new URL('./fixtures/pool-probe.mjs', import.meta.url));

  it(`a gate on the main thread is ${onPku ? 'invisible' : 'visible (mprotect: process-wide)'} to a pool thread; protect() reaches it when it returns`, () => {
    // In a process of its own with one pool thread, so that the pool's queue
    // runs in order (see the fixture).
    const out = execFileSync(process.execPath, [fixture], { encoding: 'utf8', env: { ...process.env, UV_THREADPOOL_SIZE: '1' } });
    const r = JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;
    expect(r).toEqual({
      backend,
      threadLocal: onPku,
      beforeAnyGate: false,
      inGate: { main: true, pool: !onPku },
      afterGate: { main: false, pool: false },
      afterProtectR: { r: true, rw: false },
      afterProtectNone: false,
      sameThreads: true,
    });
  });
});
