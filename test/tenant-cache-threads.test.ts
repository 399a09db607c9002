// The tenant cache across threads: what a threaded server (issue 14's
// --threads, not built yet: examples/tenant-cache/README.md "Threads: not
// yet") would rely on. The cache's own tenant memory (memory.mjs) is shared
// with a worker thread by key.handle()/adopt(); the worker sits inside tenant
// b's gate while the main thread, inside tenant a's gate, runs the fault
// injection's bug: a read past a's memory that lands on b's secret.
// pku: the gate is the worker's alone, the read dies with vmpk's report.
// mprotect: a gate is process-wide, the read returns b's secret (the
// documented limit of that backend with threads).
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { backend, onPku } from './helpers/vmpk.js';

const memoryUrl = new URL('../examples/tenant-cache/memory.mjs', import.meta.url).href;
const vmpkUrl = new URL('../dist/index.js', import.meta.url).href;
const SECRET = 'b-secret-0123456789';

// argv[1]: 'hold' (the worker holds b's gate during the read) or 'none' (no
// worker gate: the control).
const script = `
import { Worker } from 'node:worker_threads';
import koffi from 'koffi';
import { createMemory } from ${JSON.stringify(memoryUrl)};
const mode = process.argv[1];
const memory = createMemory({ isolation: 'vmpk' });
const a = memory.tenant('tenant a', 65536);
const b = memory.tenant('tenant b', 65536);
a.bytes();
b.write(() => b.bytes().set(Buffer.from(${JSON.stringify(SECRET)})));
const ctrl = new Int32Array(new SharedArrayBuffer(8));
const seen = new Uint8Array(new SharedArrayBuffer(${SECRET.length}));
let worker = null;
if (mode === 'hold') {
  // (The eval'd worker is a module too: --input-type=module carries over.)
  worker = new Worker(\`
    import { parentPort, workerData as d } from 'node:worker_threads';
    const { adopt } = await import(d.vmpk);
    const key = adopt(d.key);
    const bytes = key.regions[0].bytes;
    key.with('r', () => {
      d.seen.set(bytes.subarray(0, d.seen.length)); // proof that the gate is open here
      parentPort.postMessage('in the gate');
      Atomics.wait(d.ctrl, 1, 0, 60000); // inside b's gate until main is done
    });\`, { eval: true, workerData: { vmpk: ${JSON.stringify(vmpkUrl)}, key: b.key.handle(), ctrl, seen } });
  // Wait without blocking: the worker's start needs this thread's event loop.
  await new Promise((resolve, reject) => { worker.once('message', resolve); worker.once('error', reject); });
  process.stdout.write('worker read in its gate: ' + Buffer.from(seen).toString('latin1') + '\\n');
}
// The bug, on the thread serving tenant a: inside a's gate, a view computed
// from a's address that reaches b's first byte.
const view = new Uint8Array(koffi.view(a.address() + (b.address() - a.address()), ${SECRET.length}));
const leaked = a.write(() => Buffer.from(view).toString('latin1'));
process.stdout.write('main read: ' + leaked + '\\n');
Atomics.store(ctrl, 1, 1);
Atomics.notify(ctrl, 1);
await new Promise((r) => worker ? worker.on('exit', r) : r());
memory.close();
`;

function run(mode: 'hold' | 'none') {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, mode], { encoding: 'utf8', timeout: 120_000 });
  return { stdout: r.stdout, stderr: r.stderr, signal: r.signal, status: r.status };
}

const report = (thread: string) =>
  new RegExp(`^vmpk: SIGSEGV: read of key "tenant b" at 0x[0-9a-f]+ \\(region 0x[0-9a-f]+, 65536 bytes, offset (?:[0-9]|1[0-8])\\), thread ${thread}: no gate is open on this thread and the key's process-wide access is none$`, 'm');

describe(`tenant-cache across threads: one thread's gate and another thread's out-of-bounds read (${backend} backend)`, () => {
  it('control: with no gate open on b anywhere, the read dies with vmpk\'s report naming tenant b, and nothing leaks', () => {
    const r = run('none');
    expect(r.signal, r.stderr).toBe('SIGSEGV');
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(report('\\d+'));
  });

  it(
    onPku
      ? "pku: while a worker is inside b's gate, the main thread's read of b dies with vmpk's report, and nothing leaks"
      : "mprotect: while a worker is inside b's gate, b is open to every thread: the main thread's read returns b's secret (the documented limit)",
    () => {
      const r = run('hold');
      expect(r.stdout.split('\n')[0], r.stderr).toBe(`worker read in its gate: ${SECRET}`);
      if (onPku) {
        expect(r.signal, r.stderr).toBe('SIGSEGV');
        expect(r.stdout).toBe(`worker read in its gate: ${SECRET}\n`);
        expect(r.stdout).not.toContain('main read');
        expect(r.stderr).toMatch(report('\\d+'));
      } else {
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout).toBe(`worker read in its gate: ${SECRET}\nmain read: ${SECRET}\n`);
      }
    },
  );
});
