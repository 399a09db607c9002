// Shared test helpers: runtimes closed after each test, error assertions,
// and the backend this process runs on.
import { afterEach, expect } from 'vitest';
import { open, VmpkError, type OpenOptions, type Runtime, type VmpkErrorCode } from '../../src/index.js';

const opened: Runtime[] = [];

/** open() that the helper closes after the test (gates are closed by then). */
export function openRuntime(options?: OpenOptions): Runtime {
  const rt = open(options);
  opened.push(rt);
  return rt;
}

afterEach(() => {
  while (opened.length) opened.pop()!.close();
});

/**
 * The backend that open() with no backend option picks here: $VMPK_BACKEND
 * decides (auto on the host, pku in the QEMU guest). Where VMPK_BACKEND=pku,
 * open() throws rather than fall back, so pku-only tests never skip there.
 */
export const backend: 'pku' | 'mprotect' = (() => {
  const rt = open();
  const b = rt.backend;
  rt.close();
  return b;
})();
export const onPku = backend === 'pku';
export const onMprotect = backend === 'mprotect';

/** Runs fn, which must throw a VmpkError with `code`; returns the error. */
export function expectVmpkError(fn: () => unknown, code: VmpkErrorCode): VmpkError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `expected a VmpkError ${code}`).toBeInstanceOf(VmpkError);
  const err = thrown as VmpkError;
  expect(err.code, err.message).toBe(code);
  return err;
}

/** A small deterministic PRNG (mulberry32), so random orders are repeatable. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
