// The attack suite: one test per row of the table in docs/security.md, each
// asserting the outcome the table claims. The attacker is native/build/attack
// (test/fixtures/attacks/attack.c, built by `make -C native test`), one
// attack per child process, so a crash is observed rather than suffered.
// Where hardened mode is the answer, the same attack also runs without it
// and must succeed there: the test proves both that the threat is real and
// that the filter is what stops it. pku backend only: the guest.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { onPku } from './helpers/vmpk.js';

const attacker = fileURLToPath(new URL('../native/build/attack', import.meta.url));

interface Outcome {
  lines: Record<string, string>;
  stderr: string;
  status: number | null;
  signal: NodeJS.Signals | null;
}

function attack(name: string, harden: boolean): Outcome {
  if (!existsSync(attacker)) throw new Error(`${attacker} is missing: run \`make -C native attack\` (make test builds it)`);
  const env = { ...process.env, VMPK_BACKEND: 'pku' };
  const child = spawnSync(attacker, harden ? [name, 'harden'] : [name], { encoding: 'utf8', env, timeout: 120_000 });
  const lines: Record<string, string> = {};
  for (const line of child.stdout.split('\n')) {
    const m = /^(\w+): (.*)$/.exec(line);
    if (m) lines[m[1]!] = m[2]!;
  }
  return { lines, stderr: child.stderr, status: child.status, signal: child.signal };
}

/** The attack ran to its end and printed these lines (among others). */
function expectOutcome(o: Outcome, expected: Record<string, string>): void {
  expect(o.signal, o.stderr).toBe(null);
  expect(o.status, o.stderr).toBe(0);
  expect(o.lines['open']).toBe('ok');
  for (const [k, v] of Object.entries(expected)) expect(o.lines[k], `${k} in ${JSON.stringify(o.lines)}`).toBe(v);
}

/**
 * The attack did what it set out to do and printed these lines, then the
 * thread's next vmpk call found vmpk's PKRU bits changed behind its back
 * (the check after every WRPKRU compares with the write-protected value vmpk
 * expects) and aborted: detected, after the fact.
 */
function expectDetected(o: Outcome, expected: Record<string, string>): void {
  expect(o.signal, o.stderr).toBe('SIGABRT');
  expect(o.lines['open']).toBe('ok');
  for (const [k, v] of Object.entries(expected)) expect(o.lines[k], `${k} in ${JSON.stringify(o.lines)}`).toBe(v);
  expect(o.lines['content'], 'the abort comes at the verdict\'s gate').toBe(undefined);
}

const STOPPED = { call: 'EPERM', secret: 'hidden', content: 'intact' };

describe.skipIf(!onPku)('attacks (pku backend): stopped by the hardened mode filter', () => {
  const cases: Array<[name: string, row: string, unhardened: Record<string, string>]> = [
    ['pkey_mprotect-0', 'pkey_mprotect of vmpk pages to key 0', { call: 'ok', secret: 'exposed' }],
    ['mprotect', "mprotect of an evicted key's pages", { call: 'ok', secret: 'exposed' }],
    ['mremap', "mremap of the attacker's page over a region", { call: 'ok', secret: 'exposed', content: 'changed' }],
    ['munmap', 'munmap of a region and a fresh mapping in its place', { call: 'ok', secret: 'exposed', content: 'changed' }],
    ['mmap-fixed', 'mmap MAP_FIXED over a region', { call: 'ok', secret: 'exposed', content: 'changed' }],
    ['madvise', 'madvise(MADV_DONTNEED) wiping a region', { call: 'ok', secret: 'hidden', content: 'changed' }],
    ['process_vm_readv', 'process_vm_readv of the own process', { call: 'ok', leaked: 'yes' }],
    ['process_vm_writev', 'process_vm_writev of the own process', { call: 'ok', content: 'changed' }],
    ['ptrace', 'ptrace PEEKDATA from a forked child or parent', { call: 'ok', leaked: 'yes' }],
    ['pkey_free', 'pkey_free and pkey_alloc handing out vmpk\'s key with open rights', { call: 'ok', secret: 'exposed' }],
  ];

  it.each(cases)('%s (%s): works without harden, EPERM with it', (name, _row, unhardened) => {
    // Reallocated pkeys come back open in this thread's PKRU, vmpk's
    // metadata key among them: the verdict's gate notices and aborts.
    if (name === 'pkey_free') expectDetected(attack(name, false), unhardened);
    else expectOutcome(attack(name, false), unhardened);
    const o = attack(name, true);
    expectOutcome(o, STOPPED);
    if ('leaked' in unhardened) expect(o.lines['leaked']).toBe('no');
  });

  it('int 0x80 (i386 ABI) and x32 numbers: EPERM with harden, int 0x80 works without', () => {
    expectOutcome(attack('int80', false), { call: 'ok', secret: 'hidden' });
    expectOutcome(attack('int80', true), { call: 'EPERM', x32: 'EPERM', secret: 'hidden', content: 'intact' });
  });

  it('a hostile seccomp filter installed first (pkey_mprotect faked to succeed): the hardened open is refused', () => {
    const o = attack('hostile-seccomp', true);
    expect(o.signal, o.stderr).toBe(null);
    expect(o.status, o.stderr).toBe(0);
    expect(o.lines['call']).toBe('ok'); // the filter went on
    expect(o.lines['open']).toBe(`a seccomp filter in place stops a system call vmpk needs probe_failed=${8}`); // VMPK_PROBE_PKEY_MPROTECT
  });

  it('the same hostile filter without harden: the metadata pages never get their key, and vmpk_open dies by SIGSEGV with the report at its first write to them', () => {
    const o = attack('hostile-seccomp', false);
    expect(o.signal).toBe('SIGSEGV');
    expect(o.lines['call']).toBe('ok'); // the filter went on
    expect(o.lines['open']).toBe(undefined);
    expect(o.stderr).toMatch(/^vmpk: SIGSEGV: write to vmpk metadata at 0x[0-9a-f]+, thread \d+: only vmpk's own calls may change it/m);
  });
});

describe.skipIf(!onPku)('attacks (pku backend): stopped by design', () => {
  it('a second mapping of a region (mremap with old size 0): EINVAL from the kernel, vmpk memory is private anonymous; EPERM with harden', () => {
    expectOutcome(attack('double-map', false), { call: 'EINVAL', secret: 'hidden', content: 'intact' });
    expectOutcome(attack('double-map', true), STOPPED);
  });

  it("calling vmpk's SIGSEGV handler directly with a made-up fault: PKRU unchanged (it edits only the frame it is given), the fault reported", () => {
    const o = attack('call-handler', true);
    expectOutcome(o, { call: 'ok', pkru: 'unchanged', secret: 'hidden' });
    expect(o.stderr).toMatch(/^vmpk: SIGSEGV: read of key "secret" .*no gate is open on this thread/m);
  });
});

describe.skipIf(!onPku)('attacks (pku backend): not stopped, even hardened (the table says why)', () => {
  it("mremap joining two clean code pages of other code into a WRPKRU across the boundary: allowed, it is not vmpk's memory", () => {
    expectOutcome(attack('mremap-gadget', true), { call: 'ok', gadget: 'joined', secret: 'hidden', content: 'intact' });
  });

  it('/proc/self/mem: reads and writes the secret (the kernel ignores PKRU; seccomp cannot see the path)', () => {
    expectOutcome(attack('proc-self-mem', true), { call: 'ok', leaked: 'yes', secret: 'hidden', content: 'changed' });
  });

  it("WRPKRU in the attacker's own code (JIT output, or code written after an inspection): full access, detected at the thread's next vmpk call", () => {
    expectDetected(attack('jit-wrpkru', true), { call: 'ok', leaked: 'yes', secret: 'exposed' });
  });

  it("a signal frame's saved PKRU set to 0 (what a forged rt_sigreturn restores): full access, detected at the thread's next vmpk call", () => {
    expectDetected(attack('sigreturn-pkru', true), { call: 'ok', leaked: 'yes', secret: 'exposed' });
  });

  it("code reuse of vmpk's own syscall instruction: the filter trusts the address, not the caller", () => {
    expectOutcome(attack('syscall-reuse', true), { call: 'ok', secret: 'exposed' });
  });
});
