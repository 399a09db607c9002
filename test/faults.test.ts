// Forbidden accesses kill the process by SIGSEGV, after vmpk's one-line
// report naming the key, the access and the reason. Each case runs in a child
// process (test/fixtures/fault.mjs, which imports dist/).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { backend } from './helpers/vmpk.js';

const fixture = fileURLToPath(new URL('./fixtures/fault.mjs', import.meta.url));

function run(mode: string) {
  const child = spawnSync(process.execPath, [fixture, mode], { encoding: 'utf8', timeout: 300_000 });
  const report = child.stderr.split('\n').filter((line) => line.startsWith('vmpk: '));
  return { signal: child.signal, status: child.status, stdout: child.stdout, stderr: child.stderr, report };
}

describe(`faults in a child process (${backend} backend)`, () => {
  it('the control run makes the same accesses inside gates and survives', () => {
    const r = run('control');
    expect(r.stderr).toBe('');
    expect(r.signal).toBe(null);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`touching ${backend}\nsurvived ${0x5a + 1}\n`);
  });

  const cases: Array<[mode: string, access: 'read' | 'write', reason: RegExp]> = [
    ['read', 'read', /no gate is open on this thread and the key's process-wide access is none/],
    ['write', 'write', /no gate is open on this thread and the key's process-wide access is none/],
    ['write-after-protect', 'write', /no write gate is open on this thread and the key's process-wide access is read-only/],
    ['write-in-read-gate', 'write', /the gate open on this thread grants read only/],
    ['after-destroy', 'read', /the key was destroyed/],
  ];

  it.each(cases)('%s: dies by SIGSEGV with the report', (mode, access, reason) => {
    const r = run(mode);
    expect(r.stdout).toBe(`touching ${backend}\n`); // it got as far as the access, and no further
    expect(r.signal, r.stderr).toBe('SIGSEGV');
    expect(r.report, r.stderr).toHaveLength(1);
    const line = r.report[0]!;
    expect(line).toMatch(new RegExp(`^vmpk: SIGSEGV: ${access} of key `));
    expect(line).toContain('key "secret"');
    expect(line).toMatch(/ at 0x[0-9a-f]+/);
    expect(line).toMatch(reason);
    if (mode !== 'after-destroy') expect(line).toMatch(/\(region 0x[0-9a-f]+, 4096 bytes, offset 10\)/);
  });

  it('a SIGSEGV that is not about vmpk memory goes to the handler before vmpk (Node\'s): it dies, without the report', () => {
    const r = run('not-vmpk');
    expect(r.stdout).toBe(`touching ${backend}\n`);
    expect(r.signal, r.stderr).toBe('SIGSEGV');
    expect(r.report, r.stderr).toEqual([]);
  });
});
