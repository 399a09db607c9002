// `vmpk inspect`: output, --json and exit statuses, run as a child process.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'vmpk.mjs');
const dir = mkdtempSync(join(tmpdir(), 'vmpk-cli-'));

// The CLI runs from dist/: compile when src/inspect/ or src/cli.ts is newer
// (the global setup only looks at src/*.ts).
beforeAll(() => {
  const srcs = ['cli.ts', ...readdirSync(join(root, 'src', 'inspect')).map((f) => join('inspect', f))].filter((f) => f.endsWith('.ts'));
  const stale = srcs.some((f) => {
    const out = join(root, 'dist', f.replace(/\.ts$/, '.js'));
    return !existsSync(out) || statSync(out).mtimeMs < statSync(join(root, 'src', f)).mtimeMs;
  });
  if (stale) execFileSync(process.execPath, [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', join(root, 'tsconfig.json')], { cwd: root });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function vmpk(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

let cc = true;
try {
  execFileSync('cc', ['--version'], { stdio: 'ignore' });
} catch {
  cc = false;
}

describe('vmpk inspect', () => {
  it('exits 2 on bad usage and unreadable or non-ELF files', () => {
    expect(vmpk().status).toBe(2);
    expect(vmpk('frobnicate').status).toBe(2);
    expect(vmpk('inspect').status).toBe(2);
    expect(vmpk('inspect', '--bogus', '/bin/sh').status).toBe(2);
    expect(vmpk('inspect', '--self', '/bin/sh').status).toBe(2);
    const r = vmpk('inspect', join(dir, 'missing.so'));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/missing\.so/);
    const txt = join(dir, 'notes.txt');
    writeFileSync(txt, 'hello\n');
    expect(vmpk('inspect', txt)).toMatchObject({ status: 2, stderr: expect.stringMatching(/not an ELF file/) });
    expect(vmpk('--help')).toMatchObject({ status: 0, stdout: expect.stringMatching(/usage: vmpk inspect/) });
  });

  it.skipIf(!cc)('prints one line per occurrence and a summary; exits 1 when one is unsafe', () => {
    const so = join(dir, 'libgadgets.so');
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', so, join(root, 'test', 'fixtures', 'inspect', 'gadgets.c')]);
    const r = vmpk('inspect', so);
    expect(r.status).toBe(1);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(5);
    for (const l of lines.slice(0, 4)) expect(l).toMatch(new RegExp(`^${so.replace(/[.]/g, '\\.')}\\t0x[0-9a-f]+\\t(WRPKRU|XRSTOR)\\tunsafe\\t`));
    expect(lines[4]).toMatch(/^summary: vmpk-gate 0, known-wrapper 0, unsafe 4; \d+ executable bytes scanned/);

    const j = vmpk('inspect', '--json', so);
    expect(j.status).toBe(1);
    const report = JSON.parse(j.stdout);
    expect(report.counts).toEqual({ 'vmpk-gate': 0, 'known-wrapper': 0, unsafe: 4 });
    expect(report.occurrences.map((o: { symbol: string }) => o.symbol).sort()).toEqual(['checked', 'hidden', 'restore', 'unrelated']);
  });

  it.skipIf(!cc)('exits 0 on a file with no WRPKRU or XRSTOR', () => {
    const src = join(dir, 'plain.c');
    writeFileSync(src, 'int plain(int x) { return x * 3 + 1; }\n');
    const so = join(dir, 'libplain.so');
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', so, src]);
    const r = vmpk('inspect', so);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^summary: vmpk-gate 0, known-wrapper 0, unsafe 0;/);
  });

  it('--self scans the CLI process (libc and ld.so at least)', () => {
    const r = vmpk('inspect', '--json', '--self');
    expect([0, 1]).toContain(r.status);
    const report = JSON.parse(r.stdout);
    expect(r.status).toBe(report.counts.unsafe > 0 ? 1 : 0);
    expect(report.bytes).toBeGreaterThan(1 << 20);
    for (const o of report.occurrences) expect(['vmpk-gate', 'known-wrapper', 'unsafe']).toContain(o.verdict);
  });
});
