// examples/tenant-cache against real memcached clients from Debian's
// libmemcached-tools: memccapable's text-protocol suite, memccp/memccat/
// memcrm round trips, memcstat and memcslap; and pymemcache (Debian's
// python3-pymemcache), whose operations must get memcached's answers, at one
// thread and at two. .ci/run installs the packages (scripts/vm/deps.sh);
// elsewhere the tests skip when they are missing, but not under CI or in the
// guest, where a skip would hide a missing install.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend, prng } from './helpers/vmpk.js';
import { Client, haveMemcached, startMemcached, startServer, type CacheServer } from './helpers/tenant-cache.js';

function have(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}
const tools = ['memccapable', 'memccp', 'memccat', 'memcrm', 'memcstat', 'memcslap'];
const installed = tools.every(have);
const required = process.env.CI === 'true' || process.env.VMPK_VM === '1';

describe.skipIf(!installed && !required)(`tenant-cache with libmemcached-tools (${backend} backend)`, () => {
  let server: CacheServer;
  let dir: string;
  let servers: string;

  beforeAll(async () => {
    expect(installed, `libmemcached-tools is missing (${tools.join(', ')}): bash scripts/vm/deps.sh installs it`).toBe(true);
    server = await startServer(['--tenant-bytes', '1m']);
    servers = `--servers=127.0.0.1:${server.port}`;
    dir = mkdtempSync(join(tmpdir(), 'vmpk-cache-'));
  });
  afterAll(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const run = (tool: string, args: string[]) => spawnSync(tool, args, { encoding: 'latin1', timeout: 120_000 });

  it('memccapable: every text-protocol test passes', () => {
    const r = run('memccapable', ['-a', '-h', '127.0.0.1', '-p', String(server.port), '-t', '30']);
    const results = r.stdout.split('\n').filter((l) => /\[(pass|FAIL)\]/.test(l));
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(results.filter((l) => l.includes('[FAIL]')), r.stdout).toEqual([]);
    expect(results.length, r.stdout).toBe(27);
  });

  it('memccp stores a binary file under a tenant-prefixed key, memccat returns it byte for byte, memcrm removes it', () => {
    const rand = prng(11);
    const data = Buffer.from(Array.from({ length: 100_000 }, () => Math.floor(rand() * 256)));
    const file = join(dir, 'acme:blob.bin');
    writeFileSync(file, data);
    expect(run('memccp', [servers, '--flag=7', file]).status).toBe(0);
    const out = execFileSync('memccat', [servers, 'acme:blob.bin']);
    expect(out.equals(Buffer.concat([data, Buffer.from('\n')]))).toBe(true); // memccat ends each value with a newline
    const other = spawnSync('memccat', [servers, 'other:blob.bin'], { encoding: 'latin1' });
    expect(other.stdout).toBe('');
    expect(run('memcrm', [servers, 'acme:blob.bin']).status).toBe(0);
    const gone = spawnSync('memccat', [servers, 'acme:blob.bin'], { encoding: 'latin1' });
    expect(gone.stdout).toBe('');
    expect(gone.status).not.toBe(0);
  });

  it('memcslap sets and gets through the server; memcstat reads its stats', async () => {
    for (const test of ['set', 'get']) {
      const r = run('memcslap', [servers, `--test=${test}`, '--concurrency=2', '--execute-number=50']);
      expect(r.status, r.stdout + r.stderr).toBe(0);
    }
    const stat = run('memcstat', [servers]);
    expect(stat.status, stat.stderr).toBe(0);
    expect(stat.stdout).toMatch(/cmd_set: [1-9]\d*/);
    expect(stat.stdout).toMatch(/vmpk_backend: /);
    // memcslap's keys have no ":": they all land in the unnamed tenant, within its bound.
    const c = await Client.connect(server.port);
    expect(await c.call('stats\r\n')).toMatch(/STAT curr_items [1-9]\d*\r\n/);
    c.close();
  });
});

// Debian's python3 (pyenv's, first on some PATHs, does not see Debian's packages).
const PYTHON = '/usr/bin/python3';
const havePymemcache = spawnSync(PYTHON, ['-c', 'import pymemcache'], { stdio: 'ignore' }).status === 0;
const pyOps = new URL('./fixtures/tenant-cache/pymemcache-ops.py', import.meta.url).pathname;

describe.skipIf(!(havePymemcache && haveMemcached()) && !required)(`tenant-cache with pymemcache (${backend} backend)`, () => {
  const ops = (port: number) => {
    const r = spawnSync(PYTHON, [pyOps, String(port)], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout.split('\n').filter(Boolean);
  };
  let memcached: string[];

  beforeAll(async () => {
    expect(havePymemcache && haveMemcached(), `${PYTHON} cannot import pymemcache, or memcached is missing: bash scripts/vm/deps.sh installs them`).toBe(true);
    const mc = await startMemcached([]);
    try {
      memcached = ops(mc.port);
    } finally {
      await mc.stop();
    }
  });

  it.each([['1'], ['2']])('45 operations (pickled values, get_many over tenants, cas, incr, touch, set_many, noreply, 500 KB values) get memcached\'s answers at --threads %s', async (threads) => {
    expect(memcached).toHaveLength(45);
    expect(memcached).toContain('["get_many over tenants", {"acme:greeting": "hello", "globex:obj": {"a": [1, 2, 3], "b": "x"}}]');
    expect(memcached).toContain('["cas stale", false]');
    const server = await startServer(['--threads', threads]);
    try {
      expect(ops(server.port)).toEqual(memcached);
    } finally {
      await server.stop();
    }
  });
});
