// Child processes. Node's child_process.fork() and spawn() are fork + exec:
// a child is a fresh process and gets nothing of its parent's vmpk state (no
// runtime, no keys, no regions, no hardware keys, no PKRU bits), whatever
// gates the parent has open. It can open vmpk independently. (A native
// fork() without exec, from an addon, copies the address space instead: see
// docs/threads.md; the C tests cover it, test/c/test_fork.c.)
import { execFileSync, fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Key, Region, Runtime } from '../src/index.js';
import { backend, openRuntime } from './helpers/vmpk.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/child-open.mjs', import.meta.url));

function parentSetup(): { rt: Runtime; key: Key; region: Region; arg: string } {
  const rt = openRuntime();
  const key = rt.createKey({ name: 'parent' });
  const region = key.alloc(4096);
  key.with('rw', () => region.bytes.fill(0x5a));
  const h = key.handle().runtime;
  const arg = JSON.stringify({ address: String(region.address), handle: { ...h, libraryIdentity: String(h.libraryIdentity), state: undefined } });
  return { rt, key, region, arg };
}

function expectFreshChild(out: Record<string, unknown>): void {
  expect(out).toMatchObject({
    adopt: 'INVALID_ARGUMENT', // the handle names the parent's process
    backend,
    fresh: { liveVkeys: 0, regions: 0, hwKeysHeld: 0, gates: 0, pins: 0 },
    parentAddressReadable: false,
    firstByte: 0, // its own zeroed memory, never the parent's 0x5a
    readBack: true,
    probeOutsideGate: false,
    after: { liveVkeys: 1, hwKeysHeld: backend === 'pku' ? 1 : 0 },
  });
}

function expectParentIntact(rt: Runtime, key: Key, region: Region, stats: ReturnType<Runtime['stats']>): void {
  expect(key.with('r', () => region.bytes.every((b) => b === 0x5a))).toBe(true);
  const now = rt.stats();
  expect([now.liveVkeys, now.regions, now.hwKeysHeld]).toEqual([stats.liveVkeys, stats.regions, stats.hwKeysHeld]);
}

describe(`child processes (${backend} backend)`, () => {
  it('a child_process.fork() child opens vmpk on its own: fresh keys, none of the parent\'s regions; the parent is untouched', async () => {
    const { rt, key, region, arg } = parentSetup();
    const stats = rt.stats();
    const child = fork(FIXTURE, [arg], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    const [message] = (await once(child, 'message')) as [Record<string, unknown>];
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
    expect(message['pid']).not.toBe(process.pid);
    expectFreshChild(message);
    expectParentIntact(rt, key, region, stats);
  });

  it('a child spawned while a parent gate is open gets nothing of that gate', () => {
    const { rt, key, region, arg } = parentSetup();
    const stats = rt.stats();
    const out = key.with('rw', () => execFileSync(process.execPath, [FIXTURE, arg], { encoding: 'utf8' }));
    expectFreshChild(JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>);
    expectParentIntact(rt, key, region, stats);
  });
});
