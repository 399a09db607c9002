// examples/jit: the expression JIT compiles, runs and matches JavaScript;
// commit() refuses a constant that hides a WRPKRU, at its exact offset; the
// --attack run dies by SIGSEGV with vmpk's report.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain JavaScript module of the example, without types
import { compile, emitFunction, evaluate, parse } from '../examples/jit/compile.mjs';
import { backend, expectVmpkError, openRuntime, prng } from './helpers/vmpk.js';

const calc = fileURLToPath(new URL('../examples/jit/calc.mjs', import.meta.url));

function run(...args: string[]) {
  const child = spawnSync(process.execPath, [calc, ...args], { encoding: 'utf8', timeout: 300_000 });
  return { pid: child.pid, signal: child.signal, status: child.status, stdout: child.stdout, stderr: child.stderr };
}

const header = `vmpk ${backend} backend${backend === 'pku' ? '' : ' (emits are process-wide: W^X toggling)'}; code cache of 65536 bytes\n`;

describe(`examples/jit (${backend} backend)`, () => {
  it('compiles expressions and prints results equal to JavaScript\'s', () => {
    const r = run('(1+2)*x - 7', 'x*x + y', 'x / (y - 2)', 'x=5', 'y=-3');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(
      header +
        '(1+2)*x - 7: 69 bytes at cache offset 0\n  x=5 y=-3: 8 (JavaScript: 8) ok\n' +
        'x*x + y: 46 bytes at cache offset 80\n  x=5 y=-3: 22 (JavaScript: 22) ok\n' +
        'x / (y - 2): 71 bytes at cache offset 128\n  x=5 y=-3: -1 (JavaScript: -1) ok\n',
    );
  });

  it('on its sample points: division by zero, 64-bit wrap-around, INT64_MIN / -1', () => {
    const r = run('x / y', '9223372036854775807 + x', 'x=-9223372036854775808', 'y=-1');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('x / y: 56 bytes at cache offset 0\n  x=-9223372036854775808 y=-1: -9223372036854775808 (JavaScript: -9223372036854775808) ok\n');
    expect(r.stdout).toContain('  x=-9223372036854775808 y=-1: -1 (JavaScript: -1) ok\n');
    const d = run('x / y');
    expect(d.status).toBe(0);
    expect(d.stdout).toContain('  x=0 y=0: division by zero (JavaScript: division by zero) ok\n');
    expect(d.stdout).toContain('  x=1000000 y=12345: 81 (JavaScript: 81) ok\n');
    expect(d.stdout.match(/ ok\n/g)).toHaveLength(4);
  });

  it('a constant hiding 0F 01 EF: commit() refuses it at its offset, the compiler splits the constant', () => {
    const r = run('15663375 + x', 'x=1');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(
      header +
        "15663375 + x: commit() refused the plain encoding: a constant's bytes hold WRPKRU at cache offset 9; recompiled with split constants\n" +
        '15663375 + x: 54 bytes at cache offset 0\n  x=1 y=0: 15663376 (JavaScript: 15663376) ok\n',
    );
  });

  it('--attack: JIT code writing its own cache outside an emit dies by SIGSEGV with vmpk\'s report', () => {
    const r = run('x+1', 'x=2', '--attack');
    expect(r.stdout).toMatch(/x=2 y=0: 3 \(JavaScript: 3\) ok\nattack: JIT code at cache offset 48 writes to 0x[0-9a-f]+ \(the cache itself\), outside any emit\n$/);
    expect(r.signal, r.stderr).toBe('SIGSEGV');
    const report = r.stderr.split('\n').filter((l) => l.startsWith('vmpk: '));
    expect(report).toEqual([expect.stringMatching(new RegExp(`^vmpk: SIGSEGV: write of key "calc" at 0x[0-9a-f]+ \\(region 0x[0-9a-f]+, 65536 bytes, offset 0\\), thread ${r.pid}: no write gate is open on this thread and the key's process-wide access is read-only$`))]);
  });

  it('bad usage exits with status 2 and says why', () => {
    expect(run('1 +')).toMatchObject({ status: 2, stdout: '', stderr: 'calc: an operand is missing at token 3 of "1 +" (at the end)\n' });
    expect(run('2 3')).toMatchObject({ status: 2, stderr: 'calc: an operator is expected at token 2 of "2 3" ("3")\n' });
    expect(run('x', '--fast')).toMatchObject({ status: 2, stderr: expect.stringContaining('calc: unknown option --fast\n') });
  });
});

describe('examples/jit compiler, in process', () => {
  it('emitFunction() of a constant whose bytes are 0F 01 EF 00: UNSAFE_CODE at the constant (prologue 6 bytes + mov opcode 3)', () => {
    const cache = openRuntime().createCodeCache({ size: 4096 });
    cache.emit([0xc3]);
    const err = expectVmpkError(() => emitFunction(cache, parse('15663375')), 'UNSAFE_CODE');
    expect(err.offset).toBe(16 + 9);
    expect(err.message).toContain('WRPKRU (0F 01 EF) at cache offset 25 (byte 9 of this emit)');
    expect(cache.entries).toHaveLength(1); // nothing of it committed
    const { fn, refused } = compile(cache, parse('15663375 * y - x'));
    expect(refused.offset).toBe(16 + 9);
    expect(fn(3, 2).value).toBe(31326747n);
  });

  it('matches the reference on random expressions and values (fixed seed)', () => {
    const cache = openRuntime().createCodeCache({ size: 1 << 20 });
    const random = prng(12345);
    const rand = (n: number) => Math.floor(random() * n);
    const gen = (depth: number): string => {
      if (depth === 0 || rand(3) === 0) return ['x', 'y', String(rand(1000)), String(rand(2 ** 31) * 65537)][rand(4)]!;
      if (rand(6) === 0) return `-(${gen(depth - 1)})`;
      return `(${gen(depth - 1)} ${'+-*/'[rand(4)]} ${gen(depth - 1)})`;
    };
    let divByZero = 0;
    for (let i = 0; i < 200; i++) {
      const text = gen(4);
      const tree = parse(text);
      const { fn } = compile(cache, tree);
      for (const [x, y] of [[0n, 0n], [7n, -3n], [-(2n ** 63n), -1n], [2n ** 40n, 3n]] as const) {
        const want = evaluate(tree, { x, y });
        if (want === null) divByZero++;
        expect(fn(x, y).value, `${text} at x=${x} y=${y}`).toBe(want);
      }
    }
    expect(divByZero).toBeGreaterThan(0); // the error exit was exercised
  });
});
