// The code cache: emit, commit's scan, functions over committed code on this
// thread and on pool threads, exact costs, bad input, and writes that must
// die (child processes running test/fixtures/codecache-fault.mjs).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { VmpkError, type CodeCache, type Emitter } from '../src/index.js';
import { backend, expectVmpkError, onPku, openRuntime } from './helpers/vmpk.js';

// lea rax, [rdi + rsi]; ret
const ADD = [0x48, 0x8d, 0x04, 0x37, 0xc3];
/** mov eax, imm32; ret */
const ret = (v: number) => [0xb8, v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff, 0xc3];

function cache(size = 4096): CodeCache {
  return openRuntime().createCodeCache({ name: 'jit', size });
}

describe(`code cache (${backend} backend)`, () => {
  it('emits, commits and calls code; entries are 16-byte aligned and padded with INT3', () => {
    const c = cache();
    expect(c.size).toBe(4096);
    expect(c.name).toBe('jit');
    const a = c.emit(ADD);
    expect(a).toEqual({ offset: 0, size: 5, address: c.address });
    const b = c.emit(new Uint8Array(ret(1234567)));
    expect(b.offset).toBe(16);
    expect(b.address).toBe(c.address + 16n);
    expect(c.used).toBe(22);
    expect(c.entries).toEqual([a, b]);
    const add = c.function(a.offset, 'int64_t (int64_t, int64_t)');
    expect(add(2, 40)).toBe(42);
    expect(add(-5, 3)).toBe(-2);
    expect(c.function(b.offset, 'int (void)')()).toBe(1234567);
    expect([...c.read(0, 22)]).toEqual([...ADD, ...Array(11).fill(0xcc), ...ret(1234567)]);
  });

  it('call() runs committed code once, with the same checks as function()', () => {
    const c = cache();
    const e = c.emit(ADD);
    expect(c.call(e.offset, 'int64_t (int64_t, int64_t)', 40, 2)).toBe(42);
    expect(c.call(e.offset, 'int64_t (int64_t, int64_t)', 2n ** 62n, 2n ** 62n)).toBe(-(2n ** 63n)); // wraps, as the CPU does
    expectVmpkError(() => c.call(16, 'int (void)'), 'INVALID_ARGUMENT'); // not committed
    expectVmpkError(() => c.call(0, 'int64_t (int64_t, int64_t)', 1), 'INVALID_ARGUMENT'); // too few arguments
    expectVmpkError(() => c.call(0, 'int64_t (int64_t, int64_t)', 'a', 1), 'INVALID_ARGUMENT');
    expectVmpkError(() => c.call(0, 'nonsense ('), 'INVALID_ARGUMENT');
    expectVmpkError(() => c.emit(() => void c.call(0, 'int64_t (int64_t, int64_t)', 1, 2)), 'EMIT_NESTED');
    c.close();
    expectVmpkError(() => c.call(0, 'int64_t (int64_t, int64_t)', 1, 2), 'CACHE_CLOSED');
  });

  it('a writer function writes and patches through an Emitter', () => {
    const c = cache();
    c.emit([0x90]);
    const e = c.emit((w) => {
      expect(w.offset).toBe(16);
      expect(w.length).toBe(0);
      expect(w.available).toBe(4096 - 16);
      expect(w.write([0xb8, 0, 0, 0, 0])).toBe(16);
      w.patch(17, [99]);
      expect(w.write([0xc3])).toBe(21);
      expect(w.length).toBe(6);
    });
    expect(e).toMatchObject({ offset: 16, size: 6 });
    expect(c.function(16, 'int (void)')()).toBe(99);
  });

  it('code runs on a libuv pool thread, which never opened a gate', async () => {
    const c = cache();
    const add = c.function(c.emit(ADD).offset, 'int64_t (int64_t, int64_t)');
    expect(await add.async(20, 22)).toBe(42);
    expect(await Promise.all([add.async(1, 2), add.async(3, 4), add.async(5, 6)])).toEqual([3, 7, 11]);
  });

  it('commit() refuses WRPKRU with its offset: nothing of the emit reaches the cache, nothing is callable', () => {
    const c = cache();
    c.emit(ret(1));
    const used = c.used;
    const err = expectVmpkError(() => c.emit([0x90, 0x90, 0x0f, 0x01, 0xef, 0xc3]), 'UNSAFE_CODE');
    expect(err.offset).toBe(18);
    expect(err.message).toContain('WRPKRU (0F 01 EF) at cache offset 18 (byte 2 of this emit)');
    expect(c.used).toBe(used);
    expect(c.entries).toHaveLength(1);
    expect([...c.read(16, 6)]).toEqual(Array(6).fill(0)); // never written: the scan runs on the staging copy
    expect(err.message).toContain('Nothing of the emit was written to the cache');
    expectVmpkError(() => c.function(16, 'void (void)'), 'INVALID_ARGUMENT');
    // The next emit goes where the refused one was.
    expect(c.emit(ret(2)).offset).toBe(16);
    expect(c.function(16, 'int (void)')()).toBe(2);
  });

  it('commit() refuses XRSTOR with a memory operand, and accepts LFENCE (0F AE E8)', () => {
    const c = cache();
    const err = expectVmpkError(() => c.emit([0x48, 0x0f, 0xae, 0x2f, 0xc3]), 'UNSAFE_CODE'); // xrstor64 [rdi]
    expect(err.offset).toBe(1);
    expect(err.message).toContain('XRSTOR (0F AE, ModRM 0x2f)');
    const e = c.emit([0x0f, 0xae, 0xe8, ...ret(5)]);
    expect(c.function(e.offset, 'int (void)')()).toBe(5);
  });

  it('commit() refuses a WRPKRU that spans the end of the previous entry', () => {
    const c = cache();
    // 16 bytes ending in 0F 01: harmless alone, and the next emit starts right after.
    c.emit([...ret(3), ...Array(8).fill(0x90), 0x0f, 0x01]);
    const err = expectVmpkError(() => c.emit([0xef, 0xc3]), 'UNSAFE_CODE');
    expect(err.offset).toBe(14);
    expect(err.message).toContain('spanning the end of the previous entry');
    expect(c.entries).toHaveLength(1);
  });

  it('a writer that throws abandons the emit: nothing written, nothing committed', () => {
    const c = cache();
    const boom = new Error('compiler bug');
    expect(() =>
      c.emit((w) => {
        w.write(ret(1));
        throw boom;
      }),
    ).toThrow(boom);
    expect(c.entries).toEqual([]);
    expect([...c.read(0, 6)]).toEqual(Array(6).fill(0));
  });

  it('reset() discards the code; functions made before throw CODE_DISCARDED', () => {
    const c = cache();
    const f = c.function(c.emit(ret(8)).offset, 'int (void)');
    expect(f()).toBe(8);
    c.reset();
    expect(c.used).toBe(0);
    expect(c.entries).toEqual([]);
    expect(c.read(0, 1)[0]).toBe(0xcc);
    expectVmpkError(() => f(), 'CODE_DISCARDED');
    const g = c.function(c.emit(ret(9)).offset, 'int (void)');
    expect(g()).toBe(9);
  });

  it('an emit costs exactly two PKRU writes and no syscall (pku, key resident) or two mprotect calls (mprotect)', () => {
    const rt = openRuntime();
    const c = rt.createCodeCache({ size: 65536 });
    c.emit([0xc3]); // binds the key on pku
    const before = rt.stats();
    for (let i = 0; i < 50; i++) c.function(c.emit(ret(i)).offset, 'int (void)')();
    const after = rt.stats();
    if (onPku) {
      expect(after.syscalls - before.syscalls).toBe(0);
      expect(after.pkruWrites - before.pkruWrites).toBe(100);
    } else {
      expect(after.mprotectCalls - before.mprotectCalls).toBe(100);
      expect(after.syscalls - before.syscalls).toBe(100);
    }
    expect(after.gates - before.gates).toBe(50);
  });
});

describe('code cache: bad input and misuse', () => {
  it('createCodeCache() checks its options', () => {
    const rt = openRuntime();
    expectVmpkError(() => rt.createCodeCache(undefined as never), 'INVALID_ARGUMENT');
    expectVmpkError(() => rt.createCodeCache({} as never), 'INVALID_ARGUMENT');
    for (const size of [0, -1, 1.5, 2 ** 30 + 1, NaN, '4096', 4096n]) expectVmpkError(() => rt.createCodeCache({ size } as never), 'INVALID_ARGUMENT');
    expect(expectVmpkError(() => rt.createCodeCache({ bytes: 4096 } as never), 'INVALID_ARGUMENT').message).toContain("did you mean 'size'?");
    expectVmpkError(() => rt.createCodeCache({ size: 4096, name: 'x'.repeat(64) }), 'INVALID_ARGUMENT');
    expect(rt.createCodeCache({ size: 1 }).size).toBe(rt.capabilities.pageSize);
  });

  it('emit() checks the bytes and the room left', () => {
    const c = cache(4096);
    for (const bad of [null, 42, 'c3', [256], [-1], [0.5], ['1'], new Uint16Array(2), {}]) expectVmpkError(() => c.emit(bad as never), 'INVALID_ARGUMENT');
    // A length no cache holds, or no length at all: INVALID_ARGUMENT before anything is allocated.
    for (const bad of [{ length: 2 ** 40 }, { length: -1 }, { length: 1.5 }, { length: NaN }, { length: 4097 }]) {
      expect(expectVmpkError(() => c.emit(bad as never), 'INVALID_ARGUMENT').message).toMatch(/code\.length must be a whole number|more than the whole code cache holds \(4096 bytes\)/);
    }
    expectVmpkError(() => c.emit((w) => void w.write({ length: 2 ** 40 } as never)), 'INVALID_ARGUMENT');
    expect(expectVmpkError(() => c.emit([]), 'INVALID_ARGUMENT').message).toContain('wrote no bytes');
    expectVmpkError(() => c.emit(new Uint8Array(4097)), 'CACHE_FULL');
    c.emit(new Uint8Array(4000).fill(0x90));
    expect(expectVmpkError(() => c.emit(new Uint8Array(100)), 'CACHE_FULL').message).toContain('(4096 bytes, 96 free)');
    expectVmpkError(() => c.emit((w) => void w.write(new Uint8Array(97))), 'CACHE_FULL');
    expect(c.entries).toHaveLength(1);
  });

  it('emits do not nest, and an Emitter dies with its emit', () => {
    const c = cache();
    const f = c.function(c.emit(ret(1)).offset, 'int (void)');
    let kept: Emitter | undefined;
    expectVmpkError(() => c.emit(() => void c.emit([0xc3])), 'EMIT_NESTED');
    expectVmpkError(() => c.emit(() => void f()), 'EMIT_NESTED'); // on mprotect its pages do not execute now
    expectVmpkError(() => c.emit(() => c.reset()), 'EMIT_NESTED');
    expectVmpkError(() => c.emit(() => c.close()), 'EMIT_NESTED');
    c.emit((w) => {
      kept = w;
      w.write([0xc3]);
    });
    expectVmpkError(() => kept!.write([0xc3]), 'EMIT_ENDED');
    expectVmpkError(() => kept!.patch(16, [0xc3]), 'EMIT_ENDED');
    // Another cache may be written inside an emit: another key.
    const other = cache();
    c.emit((w) => {
      other.emit([0xc3]);
      w.write([0xc3]);
    });
    expect(other.entries).toHaveLength(1);
  });

  it('patch() stays inside what this emit wrote', () => {
    const c = cache();
    c.emit([0xc3]);
    expectVmpkError(
      () =>
        c.emit((w) => {
          w.write([0x90, 0xc3]);
          w.patch(0, [0x90]); // the previous entry
        }),
      'INVALID_ARGUMENT',
    );
    expectVmpkError(
      () =>
        c.emit((w) => {
          w.write([0x90, 0xc3]);
          w.patch(17, [0x90, 0x90]);
        }),
      'INVALID_ARGUMENT',
    );
  });

  it('a writer returning a promise is refused (ASYNC_IN_SYNC_GATE), and nothing is committed', () => {
    const c = cache();
    expectVmpkError(() => c.emit((async (w: { write(b: number[]): number }) => void w.write([0xc3])) as never), 'ASYNC_IN_SYNC_GATE');
    expect(c.entries).toEqual([]);
  });

  it('function() wants committed code and a signature koffi understands', () => {
    const c = cache();
    c.emit(ADD);
    for (const off of [-1, 5, 15, 4096, 1.5, '0']) expectVmpkError(() => c.function(off as never, 'int (void)'), 'INVALID_ARGUMENT');
    expectVmpkError(() => c.function(0, 'not a type (' as never), 'INVALID_ARGUMENT');
    expectVmpkError(() => c.function(0, 42 as never), 'INVALID_ARGUMENT');
    expect(c.function(4, 'void (void)')).toBeTypeOf('function'); // the RET inside the entry
    // The same signature twice, named or not (koffi keeps named types for good).
    expect(c.function(0, 'int64_t add(int64_t a, int64_t b)')(1, 2)).toBe(3);
    expect(c.function(0, 'int64_t add(int64_t a, int64_t b)')(3, 4)).toBe(7);
  });

  it('after close(): CACHE_CLOSED everywhere; close() is idempotent; runtime.close() closes it too', async () => {
    const rt = openRuntime();
    const c = rt.createCodeCache({ size: 4096 });
    const f = c.function(c.emit(ret(1)).offset, 'int (void)');
    c.close();
    c.close();
    expect(c.closed).toBe(true);
    expectVmpkError(() => c.emit([0xc3]), 'CACHE_CLOSED');
    expectVmpkError(() => c.function(0, 'int (void)'), 'CACHE_CLOSED');
    expectVmpkError(() => c.read(0, 1), 'CACHE_CLOSED');
    expectVmpkError(() => c.reset(), 'CACHE_CLOSED');
    expectVmpkError(() => f(), 'CACHE_CLOSED');
    await expect(f.async()).rejects.toMatchObject({ code: 'CACHE_CLOSED' });
    const d = rt.createCodeCache({ size: 4096 });
    const g = d.function(d.emit(ret(2)).offset, 'int (void)');
    rt.close();
    expect(d.closed).toBe(true);
    expectVmpkError(() => g(), 'RUNTIME_CLOSED');
    expectVmpkError(() => d.emit([0xc3]), 'RUNTIME_CLOSED');
    expectVmpkError(() => rt.createCodeCache({ size: 4096 }), 'RUNTIME_CLOSED');
  });

  it('close() and reset() wait for no async call: CACHE_BUSY while one runs', async () => {
    const c = cache();
    const f = c.function(c.emit(ret(4)).offset, 'int (void)');
    const p = f.async();
    expectVmpkError(() => c.close(), 'CACHE_BUSY');
    expectVmpkError(() => c.reset(), 'CACHE_BUSY');
    expect(await p).toBe(4);
    c.close();
  });

  it('VmpkError carries the offset for UNSAFE_CODE only', () => {
    const err = expectVmpkError(() => cache().emit([0x0f, 0x01, 0xef]), 'UNSAFE_CODE');
    expect(err).toBeInstanceOf(VmpkError);
    expect(err.offset).toBe(0);
    expect(expectVmpkError(() => cache().emit([]), 'INVALID_ARGUMENT').offset).toBeUndefined();
  });
});

const fixture = fileURLToPath(new URL('./fixtures/codecache-fault.mjs', import.meta.url));

function run(mode: string) {
  const child = spawnSync(process.execPath, [fixture, mode], { encoding: 'utf8', timeout: 300_000 });
  const report = child.stderr.split('\n').filter((line) => line.startsWith('vmpk: '));
  return { pid: child.pid, signal: child.signal, status: child.status, stdout: child.stdout, stderr: child.stderr, report };
}

describe(`code cache writes outside an emit die (${backend} backend)`, () => {
  it('the control run calls the same code, here and on a pool thread, and survives', () => {
    const r = run('control');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`writing ${backend}\nsurvived 14\n`);
  });

  it('JIT code that stores into its own cache, with no emit open, dies by SIGSEGV with the report', () => {
    const r = run('write-outside');
    expect(r.stdout).toBe(`writing ${backend}\n`);
    expect(r.signal, r.stderr).toBe('SIGSEGV');
    expect(r.report, r.stderr).toHaveLength(1);
    expect(r.report[0]).toContain(`, thread ${r.pid}: `); // the main thread
    expect(r.report[0]).toMatch(/^vmpk: SIGSEGV: write of key "jit" at 0x[0-9a-f]+ \(region 0x[0-9a-f]+, 8192 bytes, offset 8000\), thread \d+: no write gate is open on this thread and the key's process-wide access is read-only$/);
  });

  it(
    'another thread writing the cache while this thread\'s writer runs dies: the writer fills a staging buffer, the cache stays closed',
    () => {
      const r = run('write-from-pool-during-emit');
      expect(r.stdout).toBe(`writing ${backend}\n`);
      expect(r.signal, r.stderr).toBe('SIGSEGV');
      expect(r.report, r.stderr).toHaveLength(1);
      const line = r.report[0]!;
      expect(Number(/ thread (\d+):/.exec(line)?.[1])).not.toBe(r.pid); // a pool thread, not the main one (tid == pid)
      expect(line).toMatch(/^vmpk: SIGSEGV: write of key "jit" .*offset 8000\), thread \d+: no write gate is open on this thread and the key's process-wide access is read-only$/);
    },
  );
});
