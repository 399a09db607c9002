// `vmpk doctor` and `vmpk inspect --baseline`, run as child processes of the
// built CLI (dist/, as users run it), plus the brand checks and buildId().
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildId } from '../src/baseline.js';
import { Key, VmpkError, open } from '../src/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'vmpk.mjs');
const dir = mkdtempSync(join(tmpdir(), 'vmpk-doctor-'));
const onPku = process.env['VMPK_BACKEND'] === 'pku';

beforeAll(() => {
  execFileSync(process.execPath, [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', join(root, 'tsconfig.json')], { cwd: root });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function vmpk(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: dir });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('vmpk doctor', () => {
  it('--json: the facts, a verdict, and the exit status that matches the backend', () => {
    const r = vmpk('doctor', '--json');
    const report = JSON.parse(r.stdout);
    const flags = readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)![1]!.split(/\s+/);
    expect(report.cpu).toEqual({ pku: flags.includes('pku'), ospke: flags.includes('ospke') });
    expect(report.node.version).toBe(process.version);
    expect(report.platform).toBe(`linux-${process.arch}-glibc`);
    expect(report.library.path).toMatch(/libvmpk\.so$/);
    expect(report.backend.opened).toBe(true);
    expect(report.maxMapCount.limit).toBe(Number(readFileSync('/proc/sys/vm/max_map_count', 'utf8')));
    expect(report.seccomp.hardenedWouldStart, report.seccomp.detail).toBe(true);
    expect(report.seccomp.mode).toBe(0);
    expect(typeof report.ioUring.libuvRing).toBe('boolean');
    if (onPku) {
      expect(report.backend.choice).toBe('pku');
      expect(r.status).toBe(0);
      expect(report.verdict).toMatch(/^OK: the pku backend works/);
      // 15 allocatable keys, one of them vmpk's metadata key. Node 22+ hold
      // none; Node 20's V8 allocates one when it first wants it (not every
      // process does: this one got all 14).
      if (process.versions.node.startsWith('20.')) expect([13, 14]).toContain(report.pkeys.vmpkCanHold);
      else expect(report.pkeys.vmpkCanHold).toBe(14);
      expect(report.pkeys.heldByOthers).toBe(14 - report.pkeys.vmpkCanHold);
    } else {
      expect(report.backend.choice).toBe('mprotect');
      expect(r.status).toBe(3);
      expect(report.verdict).toMatch(/^MPROTECT ONLY/);
      expect(report.pkeys.vmpkCanHold).toBe(null);
    }
  });

  it('text: one fact a line, the verdict last; bad arguments exit 2', () => {
    const r = vmpk('doctor');
    const lines = r.stdout.trim().split('\n');
    for (const label of ['node:', 'platform:', 'cpu:', 'library:', 'backend:', 'pkeys:', 'seccomp:', 'vm.max_map_count:', 'io_uring:']) {
      expect(lines.filter((l) => l.startsWith(label))).toHaveLength(1);
    }
    expect(lines.at(-1)).toMatch(onPku ? /^OK: / : /^MPROTECT ONLY: /);
    expect(vmpk('doctor', '--bogus').status).toBe(2);
  });

  it('a library that does not load: verdict FAIL, exit 1, the platform named', () => {
    const r = spawnSync(process.execPath, [bin, 'doctor'], { encoding: 'utf8', env: { ...process.env, VMPK_LIBRARY: join(dir, 'missing.so') } });
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^FAIL: the native library does not load on linux-/m);
    expect(r.stdout).toContain('npx vmpk build');
  });
});

// Three scans of the process (each takes seconds, minutes in the guest).
describe('vmpk inspect --baseline', () => {
  const file = join(dir, 'baseline.json');
  let unsafe = -1;

  it('node has a build id; --write-baseline accepts every unsafe finding, --baseline then exits 0', () => {
    expect(buildId(process.execPath)).toMatch(/^[0-9a-f]{40}$/);
    expect(buildId(join(root, 'package.json'))).toBe(null);
    const w = vmpk('inspect', '--self', '--write-baseline', file);
    expect(w.status).toBe(0);
    unsafe = Number(/wrote .*: (\d+) unsafe occurrence/.exec(w.stdout)![1]);
    const b = JSON.parse(readFileSync(file, 'utf8'));
    expect(b.vmpkInspectBaseline).toBe(1);
    expect(b.entries).toHaveLength(unsafe);
    for (const e of b.entries) expect(e.buildId).toBe(buildId(e.module));
    const after = vmpk('inspect', '--self', '--baseline', file);
    expect(after.stdout).toMatch(new RegExp(`unsafe 0, accepted ${unsafe} `));
    expect(after.status).toBe(0);
  });

  it('the same entries under another build id accept nothing; a file that is not a baseline exits 2', () => {
    const other = join(dir, 'other.json');
    const b = JSON.parse(readFileSync(file, 'utf8'));
    for (const e of b.entries) e.buildId = '00'.repeat(20);
    writeFileSync(other, JSON.stringify(b));
    const r = vmpk('inspect', '--self', '--baseline', other);
    expect(r.stdout).toMatch(new RegExp(`unsafe ${unsafe}, accepted 0 `));
    expect(r.status).toBe(unsafe > 0 ? 1 : 0);
    writeFileSync(other, '{"entries": []}');
    const bad = vmpk('inspect', '--self', '--baseline', other);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('not a vmpk inspect baseline');
  });
});

describe('brand checks', () => {
  it('Key methods and getters on foreign objects throw INVALID_ARGUMENT', async () => {
    const rt = open();
    try {
      const k = rt.createKey({ name: 'b' });
      expect(k.with('rw', () => 7)).toBe(7);
      const calls: Array<() => unknown> = [
        () => Key.prototype.with.call({} as Key, 'rw', () => 1),
        () => Object.create(Key.prototype).alloc(4096),
        () => Object.getOwnPropertyDescriptor(Key.prototype, 'name')!.get!.call({ ...k }),
        () => rt.createKey.call(Object.create(rt)),
      ];
      for (const c of calls) {
        expect(c).toThrow(VmpkError);
        try {
          c();
        } catch (err) {
          expect((err as VmpkError).code).toBe('INVALID_ARGUMENT');
        }
      }
      await expect(Key.prototype.withAsync.call(null as unknown as Key, 'rw', () => 1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    } finally {
      rt.close();
    }
  });
});
