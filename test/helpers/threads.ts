// Other threads for the thread tests: a worker driven through shared memory
// (test/fixtures/probe-worker.mjs), so the main thread can ask it something
// while itself blocked inside a synchronous gate.
import { Worker } from 'node:worker_threads';
import type { KeyHandle } from '../../src/index.js';

export const CMD = { probeR: 1, probeRW: 2, gateSwap: 3, readInGate: 4, hold: 5, release: 6, exit: 7, probeOtherR: 8, close: 9 } as const;

/** How long the main thread blocks for a worker's answer: node in the QEMU guest takes seconds to start. */
const WAIT_MS = 120_000;

export class ProbeWorker {
  readonly worker: Worker;
  readonly #ctrl: Int32Array;
  #exited: Promise<number>;
  #error: unknown;

  private constructor(worker: Worker, ctrl: Int32Array) {
    this.worker = worker;
    this.#ctrl = ctrl;
    worker.on('error', (err) => (this.#error = err));
    this.#exited = new Promise((resolve) => worker.on('exit', resolve));
  }

  /** Starts a worker that adopts `key` (and `other`, for probeOtherR). Returns at once: see ready(). */
  static start(key: KeyHandle, other?: KeyHandle): ProbeWorker {
    const ctrl = new Int32Array(new SharedArrayBuffer(8 * 4));
    const worker = new Worker(new URL('../fixtures/probe-worker.mjs', import.meta.url), { workerData: { key, other, ctrl: ctrl.buffer } });
    return new ProbeWorker(worker, ctrl);
  }

  /** Blocks until the worker has adopted the key; returns its first probe('r'), made at start. */
  ready(): number {
    if (Atomics.wait(this.#ctrl, 5, 0, WAIT_MS) === 'timed-out') throw new Error(`probe worker: not ready after ${WAIT_MS} ms (${String(this.#error ?? 'no error seen yet')})`);
    return Atomics.load(this.#ctrl, 3);
  }

  /** Blocks until the worker ran the command; returns its answer. */
  call(cmd: number, arg = 0): number {
    const c = this.#ctrl;
    const seq = Atomics.load(c, 0) + 1;
    Atomics.store(c, 1, cmd);
    Atomics.store(c, 2, arg);
    Atomics.store(c, 0, seq);
    Atomics.notify(c, 0);
    const deadline = Date.now() + WAIT_MS;
    while (Atomics.load(c, 4) !== seq) {
      if (Date.now() > deadline) throw new Error(`probe worker: no answer to command ${cmd} after ${WAIT_MS} ms (${String(this.#error ?? 'no error seen')})`);
      Atomics.wait(c, 4, Atomics.load(c, 4), 100);
    }
    return Atomics.load(c, 3);
  }

  /** Ends the worker; resolves with its exit code (throws what it threw). */
  async stop(): Promise<number> {
    this.call(CMD.exit);
    const code = await this.#exited;
    if (this.#error !== undefined) throw this.#error;
    return code;
  }
}
