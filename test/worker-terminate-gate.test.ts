// A Worker terminated while it is inside key.with(): fn never returns and
// with()'s own end never runs (termination is not an exception JS catches).
// The worker's thread still ends, and vmpk's thread-exit hook closes the
// gates it left open (test_threads: exiting_thread_releases_its_gates, for
// a plain thread): after terminate() the pages are closed again, the key's
// count of open gates is back to none (destroy is not BUSY), and no other
// thread's gate is touched.
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { onMprotect, openRuntime } from './helpers/vmpk.js';

describe('a worker terminated inside a gate', () => {
  it('leaves no gate open: its pages close again and the key can be destroyed', async () => {
    const rt = openRuntime();
    const key = rt.createKey({ name: 'worker gate' });
    const region = key.alloc(4096);
    const ctrl = new Int32Array(new SharedArrayBuffer(4));
    const code = `
      const { workerData } = require('node:worker_threads');
      import(workerData.dist).then(({ adopt }) => {
        const key = adopt(workerData.key);
        const region = key.regions[0];
        const ctrl = new Int32Array(workerData.ctrl);
        key.with('rw', () => {
          region.bytes[0] = 0x5a;
          Atomics.store(ctrl, 0, 1);
          Atomics.notify(ctrl, 0);
          for (;;); // until terminated
        });
      });`;
    const w = new Worker(code, {
      eval: true,
      workerData: { dist: new URL('../dist/index.js', import.meta.url).href, key: key.handle(), ctrl: ctrl.buffer },
    });
    if (Atomics.wait(ctrl, 0, 0, 120_000) === 'timed-out') throw new Error('the worker never entered its gate');
    // mprotect: a gate opens the pages to every thread while it is open
    // (so this assertion shows the worker's gate is open now); pku: only
    // the worker's thread.
    expect(rt.probe(region, 'rw')).toBe(onMprotect);
    const exited = once(w, 'exit');
    await w.terminate();
    await exited;
    expect(rt.probe(region, 'r')).toBe(false);
    expect(key.with('r', () => region.bytes[0])).toBe(0x5a); // the worker's write, kept
    expect(rt.probe(region, 'r')).toBe(false);
    key.destroy(); // BUSY if the worker's gate were still counted
    expect(rt.stats().liveVkeys).toBe(0);
  });
});
