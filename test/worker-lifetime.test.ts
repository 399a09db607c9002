// vmpk loaded by worker threads only. koffi drops a library when the last
// worker that loaded it ends, and a dlclose'd libvmpk would leave its
// thread-exit destructor and its SIGSEGV handler pointing into unmapped
// code: the process died by SIGSEGV as the first such worker exited. The
// library is linked -z nodelete, so it stays loaded once loaded.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { backend } from './helpers/vmpk.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/worker-only.mjs', import.meta.url));

function run(mode: string) {
  const r = spawnSync(process.execPath, [FIXTURE, mode], { encoding: 'utf8', timeout: 120_000 });
  const report = r.stderr.split('\n').filter((line) => line.startsWith('vmpk: '));
  return { ...r, report };
}

describe('vmpk in worker threads only', () => {
  it('a worker that opened a runtime (left open or closed) ends, the next opens its own, the process exits cleanly', () => {
    const r = run('sequence');
    expect(r.signal, r.stderr).toBe(null);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([
      { ok: true, backend, code: 0 },
      { ok: true, backend, code: 0 },
    ]);
  });

  it('after two such workers ended, a third one\'s stray read still dies by vmpk\'s report', () => {
    const r = run('fault');
    expect(r.signal, r.stderr).toBe('SIGSEGV');
    expect(r.stdout).toContain('touching');
    expect(r.report, r.stderr).toHaveLength(1);
    expect(r.report[0]).toMatch(/^vmpk: SIGSEGV: read of key .*worker secret/);
  });
});
