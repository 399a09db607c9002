// key.withAsync(): an asynchronous gate. The key stays pinned across fn's
// awaits, and access is open only while fn's own code runs: other tasks that
// run on the same thread during its awaits get none. The gate closes around
// every await on both backends, so the expectations hold on both.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { VmpkError, type Key, type Region, type Runtime } from '../src/index.js';
import { backend, expectVmpkError, onPku, openRuntime } from './helpers/vmpk.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const STUB = `${ROOT}native/build/stub/libvmpk.so`;

function setup(): { rt: Runtime; key: Key; region: Region } {
  const rt = openRuntime();
  const key = rt.createKey({ name: 'async' });
  const region = key.alloc(4096);
  return { rt, key, region };
}

async function rejection(p: Promise<unknown>): Promise<VmpkError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(VmpkError);
    return err as VmpkError;
  }
  throw new Error('expected a rejection');
}

describe(`key.withAsync() (${backend} backend)`, () => {
  it('two interleaved tasks on one thread: the other task probing during fn’s awaits is denied; fn itself has access after each await', async () => {
    const { rt, key, region } = setup();
    const seen: string[] = [];
    const task = key.withAsync('rw', async () => {
      seen.push(`fn start ${rt.probe(region, 'rw')}`);
      region.bytes[0] = 1;
      await sleep(5);
      seen.push(`fn after timer ${rt.probe(region, 'rw')}`);
      region.bytes[0]++;
      await null;
      seen.push(`fn after await null ${rt.probe(region, 'rw')}`);
      await sleep(5);
      seen.push(`fn end ${rt.probe(region, 'rw')}`);
      return region.bytes[0]!;
    });
    const other = (async () => {
      for (let i = 0; i < 3; i++) {
        seen.push(`other ${i} ${rt.probe(region, 'r')}`);
        await sleep(3);
      }
    })();
    expect(rt.stats().pins).toBe(1);
    expect(await task).toBe(2);
    await other;
    expect(seen.filter((s) => s.startsWith('fn'))).toEqual(['fn start true', 'fn after timer true', 'fn after await null true', 'fn end true']);
    expect(seen.filter((s) => s.startsWith('other'))).toEqual(['other 0 false', 'other 1 false', 'other 2 false']);
    // The other task really ran while fn was waiting.
    expect(seen.indexOf('other 1 false')).toBeLessThan(seen.indexOf('fn end true'));
    expect(rt.stats().pins).toBe(0);
    expect(rt.probe(region, 'r')).toBe(false);
  });

  it('the other task is denied in the middle of fn’s await, at the exact point it runs', async () => {
    const { rt, key, region } = setup();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let inside = false;
    const task = key.withAsync('r', async () => {
      inside = true;
      await gate;
      return rt.probe(region, 'r');
    });
    expect(inside).toBe(true); // the first piece ran synchronously
    await null;
    expect(rt.probe(region, 'r')).toBe(false);
    release();
    expect(await task).toBe(true);
  });

  it('resolves with the value fn returns, from an async or a plain function', async () => {
    const { key, region } = setup();
    expect(await key.withAsync('rw', () => (region.bytes[1] = 7))).toBe(7);
    expect(await key.withAsync('r', async () => region.bytes[1])).toBe(7);
    expect(await key.withAsync('r', () => Promise.resolve('p'))).toBe('p');
  });

  it('a throw or a rejection in fn rejects withAsync with it unchanged and unpins the key', async () => {
    const { rt, key } = setup();
    const boom = new Error('boom');
    await expect(key.withAsync('rw', () => {
      throw boom;
    })).rejects.toBe(boom);
    expect(rt.stats().pins).toBe(0);
    await expect(key.withAsync('rw', async () => {
      await null;
      throw boom;
    })).rejects.toBe(boom);
    expect(rt.stats().pins).toBe(0);
    key.destroy(); // nothing pins it any more
  });

  it('pins the key while fn runs: destroy() and close() inside fn throw KEY_BUSY', async () => {
    const { rt, key } = setup();
    await key.withAsync('r', async () => {
      await null;
      expect(rt.stats().pins).toBe(1);
      expectVmpkError(() => key.destroy(), 'KEY_BUSY');
      expectVmpkError(() => rt.close(), 'KEY_BUSY');
    });
    expect(rt.stats().pins).toBe(0);
  });

  it('counts a gate per piece of fn, and no syscall on pku once resident', async () => {
    const { rt, key, region } = setup();
    key.with('r', () => undefined); // resident now (pku)
    const before = rt.stats();
    await key.withAsync('rw', async () => {
      region.bytes[0] = 1;
      await null;
      region.bytes[0] = 2;
      await null;
      region.bytes[0] = 3;
    });
    const after = rt.stats();
    expect(after.gates - before.gates).toBe(3);
    if (rt.backend === 'pku') {
      expect(after.hits - before.hits).toBe(3);
      expect(after.syscalls - before.syscalls).toBe(0);
    } else {
      expect(after.mprotectCalls - before.mprotectCalls).toBe(6);
    }
  });

  it('nests: with() inside a piece, withAsync() inside withAsync(); an inner piece opens the outer gate too', async () => {
    const rt = openRuntime();
    const outer = rt.createKey({ name: 'outer' });
    const inner = rt.createKey({ name: 'inner' });
    const o = outer.alloc(4096);
    const i = inner.alloc(4096);
    const seen: boolean[][] = [];
    const probe = () => [rt.probe(o, 'rw'), rt.probe(i, 'r'), rt.probe(i, 'rw')];
    await outer.withAsync('rw', async () => {
      await null;
      seen.push(probe()); // outer only
      inner.with('r', () => seen.push(probe())); // outer + inner read
      await inner.withAsync('rw', async () => {
        seen.push(probe());
        await sleep(1);
        seen.push(probe()); // a later inner piece: both
      });
      seen.push(probe()); // outer only again
    });
    seen.push(probe());
    expect(seen).toEqual([
      [true, false, false],
      [true, true, false],
      [true, true, true],
      [true, true, true],
      [true, false, false],
      [false, false, false],
    ]);
    expect(rt.stats().pins).toBe(0);
  });

  it('a callback that fn left behind gets no access once withAsync has settled', async () => {
    const { rt, key, region } = setup();
    let later: Promise<boolean> | undefined;
    await key.withAsync('r', () => {
      later = sleep(10).then(() => rt.probe(region, 'r'));
    });
    expect(await later).toBe(false);
  });

  it('concurrent async gates on one key on one thread each see their own pieces only', async () => {
    const { rt, key, region } = setup();
    const other = rt.createKey({ name: 'other' });
    const r2 = other.alloc(4096);
    const results = await Promise.all([
      key.withAsync('rw', async () => {
        await sleep(2);
        return [rt.probe(region, 'rw'), rt.probe(r2, 'r')];
      }),
      other.withAsync('r', async () => {
        await sleep(1);
        return [rt.probe(region, 'r'), rt.probe(r2, 'r')];
      }),
      key.withAsync('r', async () => {
        await sleep(3);
        return [rt.probe(region, 'rw'), rt.probe(region, 'r')];
      }),
    ]);
    // On mprotect the pages give the union of every open gate, and only the
    // running piece's gates are open; on pku the same by thread-local PKRU.
    expect(results).toEqual([
      [true, false],
      [false, true],
      [false, true],
    ]);
  });

  it('checks its arguments: access, fn, options (rejects with INVALID_ARGUMENT, nothing pinned)', async () => {
    const { rt, key } = setup();
    for (const [args, text] of [
      [['none', () => 0], "access must be one of 'r', 'rw'"],
      [['rw', 1], 'fn must be a function'],
      [['rw', () => 0, 5], 'options must be an object'],
      [['rw', () => 0, { timeOut: 5 }], "unknown option 'timeOut'; did you mean 'timeout'?"],
      [['rw', () => 0, { timeout: -1 }], "option 'timeout' (milliseconds) must be an integer from 0 to 2147483647, got -1"],
      [['rw', () => 0, { timeout: 1.5 }], 'not an integer'],
      [['rw', () => 0, { signal: {} }], "option 'signal' must be an AbortSignal"],
    ] as const) {
      const err = await rejection((key.withAsync as (...a: unknown[]) => Promise<unknown>)(...args));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toContain(text);
    }
    expect(rt.stats().pins).toBe(0);
  });

  it('an AbortSignal already aborted rejects with ABORTED (its reason as cause) before fn runs', async () => {
    const { rt, key } = setup();
    const reason = new Error('stop');
    let ran = false;
    const err = await rejection(key.withAsync('r', () => (ran = true), { signal: AbortSignal.abort(reason) }));
    expect(err.code).toBe('ABORTED');
    expect(err.cause).toBe(reason);
    expect(ran).toBe(false);
    expect(rt.stats().pins).toBe(0);
  });

  it('on a destroyed key or a closed runtime: KEY_DESTROYED, RUNTIME_CLOSED', async () => {
    const { rt, key } = setup();
    const k2 = rt.createKey();
    k2.destroy();
    expect((await rejection(k2.withAsync('r', () => 0))).code).toBe('KEY_DESTROYED');
    rt.close();
    expect((await rejection(key.withAsync('r', () => 0))).code).toBe('RUNTIME_CLOSED');
  });

  // Waiting needs every hardware key pinned: the pku backend (in the guest),
  // or on a host without PKU the stub build of the core, which runs the pku
  // backend's logic with PKRU as a variable.
  const stub = !onPku && existsSync(STUB);
  it.runIf(onPku || stub)(`when every hardware key is pinned it waits in order, and honours a timeout and an AbortSignal (${onPku ? 'pku' : 'stub build, pku backend'})`, () => {
    const env = onPku ? process.env : { ...process.env, VMPK_LIBRARY: STUB, VMPK_BACKEND: 'pku' };
    const out = execFileSync(process.execPath, [`${ROOT}test/fixtures/async-wait.mjs`], { encoding: 'utf8', env });
    expect(JSON.parse(out.trim().split('\n').pop()!)).toEqual({
      backend: 'pku',
      hardwareKeys: 2,
      pinsHeld: 2,
      sync: 'KEYS_EXHAUSTED',
      timeout0: 'TIMEOUT',
      timeout: 'TIMEOUT',
      timeoutWaited: true,
      abort: { code: 'ABORTED', cause: 'enough' },
      fnRanAfterCancel: false,
      pinsWhileWaiting: 2,
      waited: ['c', 'd'],
      order: ['c', 'd'],
      held: ['a', 'b'],
      pinsAfter: 0,
      values: [3, 4],
    });
  });
});
