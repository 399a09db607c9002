// Hardened mode from TypeScript: the option and $VMPK_HARDEN, a hardened
// process that keeps working while other code's kernel calls on vmpk's
// memory fail, and the refusal under a hostile filter. Hardening lasts for
// the life of a process, so those run in child processes
// (test/fixtures/harden-open.mjs). Either backend: the filter needs no PKU.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { hardenInfo, open } from '../src/index.js';
import { backend, expectVmpkError } from './helpers/vmpk.js';

const fixture = fileURLToPath(new URL('./fixtures/harden-open.mjs', import.meta.url));

function run(mode: string) {
  const child = spawnSync(process.execPath, [fixture, mode], { encoding: 'utf8', timeout: 300_000 });
  expect([child.status, child.signal], child.stderr).toEqual([0, null]);
  return JSON.parse(child.stdout) as Record<string, unknown>;
}

describe(`hardened mode (${backend} backend)`, () => {
  it('this process is hardened exactly when VMPK_HARDEN=1 (the helpers opened a runtime already)', () => {
    const info = hardenInfo();
    expect(info.active).toBe(process.env['VMPK_HARDEN'] === '1');
    if (info.active) expect(info.seccompMode).toBe(2);
  });

  it('bad values of the option and of $VMPK_HARDEN are INVALID_ARGUMENT', () => {
    const e = expectVmpkError(() => open({ harden: 'yes' as never }), 'INVALID_ARGUMENT');
    expect(e.message).toBe("open(): option 'harden' must be true or false, got \"yes\"");
    const saved = process.env['VMPK_HARDEN'];
    process.env['VMPK_HARDEN'] = 'on';
    try {
      expect(expectVmpkError(() => open(), 'INVALID_ARGUMENT').message).toMatch(/VMPK_HARDEN must be '1' or '0'/);
    } finally {
      if (saved === undefined) delete process.env['VMPK_HARDEN'];
      else process.env['VMPK_HARDEN'] = saved;
    }
    expectVmpkError(() => open({ hardened: true } as never), 'INVALID_ARGUMENT');
  });

  it("open({ harden: true }): vmpk works on, other code's mprotect and munmap of a region fail with EPERM", () => {
    const r = run('open');
    expect(r['backend']).toBe(backend);
    expect(r['info']).toMatchObject({ active: true, seccompMode: 2, probeFailed: [] });
    const info = r['info'] as { seccompFilters: number; seccompFiltersBefore: number; seccompModeBefore: number };
    // One filter more than before (-1 on kernels before 5.9, which have no count).
    if (info.seccompFiltersBefore >= 0) expect(info.seccompFilters).toBe(info.seccompFiltersBefore + 1);
    expect(r['mprotect']).toEqual([-1, r['EPERM']]);
    expect(r['munmap']).toEqual([-1, r['EPERM']]);
    expect(r['probe']).toBe(false);
    expect(r['afterProtect']).toEqual([true, 7]);
    expect(r['sum']).toBe((39 * 40) / 2);
  });

  it('a filter installed first that fakes tgkill: SECCOMP_FILTERED, naming the call, and no filter of vmpk', () => {
    const r = run('hostile');
    expect(r['noNewPrivs']).toBe(0);
    expect(r['hostile']).toBe(0);
    expect(r['opened']).toBeUndefined();
    expect(r['code']).toBe('SECCOMP_FILTERED');
    expect(r['message']).toMatch(/^open\(\): hardened mode refused: a seccomp filter already in place \(Seccomp: 2, (\d+|-1) filters\) makes these calls fail or not take effect in a probe: rt_sigaction\/tgkill;/);
    expect(r['info']).toMatchObject({ active: false, seccompMode: 2, probeFailed: ['rt_sigaction/tgkill'] });
  });
});
