// examples/tenant-cache's binary protocol, side by side with Debian's
// memcached (required under CI and in the guest; skipped elsewhere when it is
// missing): the same requests give the same responses (CAS values compared
// only as zero or not). Then memjs, the binary-only npm client, as a client,
// with SASL PLAIN binding its connection to a tenant.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error memjs ships no types
import memjs from 'memjs';
import { backend } from './helpers/vmpk.js';
import { haveMemcached, startMemcached, startServer, type CacheServer } from './helpers/tenant-cache.js';
import { BinaryClient, incrExtras, req, shape, storeExtras, u32 } from './helpers/binary.js';

const required = process.env.CI === 'true' || process.env.VMPK_VM === '1';
const authFile = fileURLToPath(new URL('./fixtures/tenant-cache/auth.txt', import.meta.url));

const OP = {
  get: 0x00, set: 0x01, add: 0x02, replace: 0x03, delete: 0x04, incr: 0x05, decr: 0x06, quit: 0x07, flush: 0x08, getq: 0x09,
  noop: 0x0a, version: 0x0b, getk: 0x0c, getkq: 0x0d, append: 0x0e, prepend: 0x0f, stat: 0x10, setq: 0x11, addq: 0x12,
  replaceq: 0x13, deleteq: 0x14, incrq: 0x15, decrq: 0x16, quitq: 0x17, flushq: 0x18, appendq: 0x19, prependq: 0x1a,
  touch: 0x1c, gat: 0x1d, gatq: 0x1e, gatk: 0x23, gatkq: 0x24,
};

/** Malformed requests: each on a fresh connection, answered, then the server closes it. */
const CLOSING: Array<[string, Buffer]> = [
  ['get with extras', req(OP.get, { key: 'k', extras: u32(1) })],
  ['set without extras', req(OP.set, { key: 'k', value: 'v' })],
  ['get without a key', req(OP.get, {})],
  ['incr with short extras', req(OP.incr, { key: 'c', extras: u32(1) })],
  ['a key over 250 bytes', req(OP.get, { key: 'k'.repeat(251) })],

];

/** Request sequences; each is sent at once (pipelined), then a noop. */
const CASES: Array<[string, Buffer[]]> = [
  ['get, getk, getq, getkq of a missing key', [req(OP.get, { key: 'm', opaque: 1 }), req(OP.getk, { key: 'm', opaque: 2 }), req(OP.getq, { key: 'm', opaque: 3 }), req(OP.getkq, { key: 'm', opaque: 4 })]],
  ['set then get, getk, getq, getkq', [req(OP.set, { key: 'k', extras: storeExtras(7, 0), value: 'hello', opaque: 5 }), req(OP.get, { key: 'k', opaque: 6 }), req(OP.getk, { key: 'k' }), req(OP.getq, { key: 'k' }), req(OP.getkq, { key: 'k' })]],
  ['add existing and new, replace missing and existing', [req(OP.add, { key: 'k', extras: storeExtras(0, 0), value: 'x' }), req(OP.add, { key: 'n', extras: storeExtras(1, 0), value: 'new' }), req(OP.replace, { key: 'nope', extras: storeExtras(0, 0), value: 'x' }), req(OP.replace, { key: 'n', extras: storeExtras(2, 0), value: 'rep' }), req(OP.get, { key: 'n' })]],
  ['append, prepend, on a missing key', [req(OP.append, { key: 'k', value: '-tail' }), req(OP.prepend, { key: 'k', value: 'head-' }), req(OP.get, { key: 'k' }), req(OP.append, { key: 'nope', value: 'x' }), req(OP.prependq, { key: 'nope', value: 'x' })]],
  ['quiet stores: no reply on success, a reply on failure', [req(OP.setq, { key: 'q', extras: storeExtras(0, 0), value: 'v' }), req(OP.addq, { key: 'q', extras: storeExtras(0, 0), value: 'v' }), req(OP.replaceq, { key: 'nope', extras: storeExtras(0, 0), value: 'v' }), req(OP.appendq, { key: 'q', value: 'w' }), req(OP.getq, { key: 'q' })]],
  ['delete, delete missing, deleteq', [req(OP.delete, { key: 'q' }), req(OP.delete, { key: 'q' }), req(OP.deleteq, { key: 'n' }), req(OP.deleteq, { key: 'n' }), req(OP.get, { key: 'n' })]],
  ['incr/decr: create with initial, count, floor at zero, missing without create, non-numeric', [
    req(OP.incr, { key: 'c', extras: incrExtras(5n, 10n, 0) }), req(OP.incr, { key: 'c', extras: incrExtras(5n, 10n, 0) }),
    req(OP.decr, { key: 'c', extras: incrExtras(100n, 0n, 0) }), req(OP.incrq, { key: 'c', extras: incrExtras(3n, 0n, 0) }),
    req(OP.decrq, { key: 'c', extras: incrExtras(1n, 0n, 0) }), req(OP.get, { key: 'c' }),
    req(OP.incr, { key: 'none', extras: incrExtras(1n, 0n, 0xffffffff) }), req(OP.incr, { key: 'k', extras: incrExtras(1n, 0n, 0) }),
    req(OP.incr, { key: 'big', extras: incrExtras(1n, 18446744073709551615n, 0) }), req(OP.incr, { key: 'big', extras: incrExtras(1n, 0n, 0) }),
  ]],
  ['touch, gat, gatk, gatq, gatkq', [req(OP.touch, { key: 'k', extras: u32(100) }), req(OP.touch, { key: 'nope', extras: u32(100) }), req(OP.gat, { key: 'k', extras: u32(0) }), req(OP.gatk, { key: 'k', extras: u32(0) }), req(OP.gatq, { key: 'nope', extras: u32(0) }), req(OP.gatkq, { key: 'k', extras: u32(0) })]],
  ['cas: wrong, on a missing key', [req(OP.set, { key: 'k', extras: storeExtras(0, 0), value: 'v', cas: 123456789n }), req(OP.set, { key: 'nope', extras: storeExtras(0, 0), value: 'v', cas: 5n })]],
  ['an expired store is gone', [req(OP.set, { key: 'e', extras: storeExtras(0, 0xffffffff), value: 'v' }), req(OP.get, { key: 'e' })]],
  ['a value over the item size', [req(OP.set, { key: 'huge', extras: storeExtras(0, 0), value: Buffer.alloc(2 << 20, 0x61) }), req(OP.get, { key: 'huge' })]],
  // Without a key: memcached 1.6.18 skips an unknown request's body twice when it has one.
  ['an unknown opcode', [req(0x50, { opaque: 4 })]],
  ['flush, flushq, then get', [req(OP.flush), req(OP.flushq), req(OP.get, { key: 'k' })]],
];

describe.skipIf(!haveMemcached() && !required)(`tenant-cache binary protocol side by side with memcached (${backend} backend)`, () => {
  let server: CacheServer;
  let mc: { port: number; stop: () => Promise<void> };
  let ours: BinaryClient;
  let theirs: BinaryClient;

  beforeAll(async () => {
    expect(haveMemcached(), 'memcached is missing: bash scripts/vm/deps.sh installs it').toBe(true);
    server = await startServer(['--tenant-bytes', '4m', '--max-item-size', '1m']);
    mc = await startMemcached(['-m', '64']);
    ours = await BinaryClient.connect(server.port);
    theirs = await BinaryClient.connect(mc.port);
  });
  afterAll(async () => {
    ours?.close();
    theirs?.close();
    await server?.stop();
    await mc?.stop();
  });

  for (const [name, requests] of CASES) {
    it(name, async () => {
      const want = (await theirs.call(...requests)).map(shape);
      const got = (await ours.call(...requests)).map(shape);
      expect(got).toEqual(want);
    });
  }

  for (const [name, request] of CLOSING) {
    it(`${name}: the same answer, then the connection is closed`, async () => {
      const run = async (port: number) => {
        const c = await BinaryClient.connect(port);
        c.socket.write(request);
        await new Promise<void>((resolve) => c.socket.on('close', () => resolve()));
        return c.drain().map(shape);
      };
      expect(await run(server.port)).toEqual(await run(mc.port));
    });
  }

  it('version and stat answer in the protocol\'s form', async () => {
    const [v] = await ours.call(req(OP.version, { opaque: 9 }));
    expect(shape(v)).toEqual({ opcode: OP.version, status: 0, opaque: 9, cas: 0, extras: '', key: '', value: '1.6.0-vmpk-cache' });
    const stats = await ours.call(req(OP.stat, { opaque: 10 }));
    expect(stats.at(-1)!.key.length).toBe(0);
    const names = stats.slice(0, -1).map((p) => p.key.toString());
    expect(names).toContain('curr_items');
    expect(stats.every((p) => p.opaque === 10 && p.status === 0)).toBe(true);
  });

  it('quit answers, then the server closes; quitq closes without an answer', async () => {
    for (const [op, answers] of [[OP.quit, 1], [OP.quitq, 0]] as const) {
      const c = await BinaryClient.connect(server.port);
      c.socket.write(req(op, { opaque: 3 }));
      await new Promise<void>((resolve) => c.socket.on('close', () => resolve()));
      const m = await BinaryClient.connect(mc.port);
      m.socket.write(req(op, { opaque: 3 }));
      await new Promise<void>((resolve) => m.socket.on('close', () => resolve()));
      expect(answers).toBe(op === OP.quit ? 1 : 0);
    }
  });
});

describe(`tenant-cache with memjs (${backend} backend)`, () => {
  let server: CacheServer;
  let auth: CacheServer;
  beforeAll(async () => {
    server = await startServer(['--tenant-bytes', '1m', '--max-item-size', '256k']);
    auth = await startServer(['--auth-file', authFile, '--tenant-bytes', '1m', '--max-item-size', '256k']);
  });
  afterAll(async () => {
    await server?.stop();
    await auth?.stop();
  });

  it('set, get, add, replace, append, delete, increment, decrement, touch, flush, stats', async () => {
    const c = memjs.Client.create(`127.0.0.1:${server.port}`, { retries: 0, logger: { log() {} } });
    try {
      expect(await c.set('acme:k', 'hello', { expires: 0 })).toBe(true);
      const got = await c.get('acme:k');
      expect(got.value.toString()).toBe('hello');
      expect(await c.add('acme:k', 'x')).toBe(false);
      expect(await c.add('acme:n', '1')).toBe(true);
      expect(await c.replace('acme:missing', 'x')).toBe(false);
      expect(await c.replace('acme:n', '41')).toBe(true);
      expect(await c.append('acme:k', ' world')).toBe(true);
      // memjs 1.3.2 sends prepend with append's opcode (0x0E): it appends.
      expect(await c.prepend('acme:k', '!')).toBe(true);
      expect((await c.get('acme:k')).value.toString()).toBe('hello world!');
      expect(await c.increment('acme:n', 1, {})).toEqual({ success: true, value: 42 });
      expect(await c.decrement('acme:n', 50, {})).toEqual({ success: true, value: 0 });
      expect(await c.increment('acme:fresh', 1, { initial: 7 })).toEqual({ success: true, value: 7 });
      expect(await c.touch('acme:k', 100)).toBe(true);
      expect(await c.delete('acme:k')).toBe(true);
      expect(await c.delete('acme:k')).toBe(false);
      expect((await c.get('acme:k')).value).toBe(null);
      const big = Buffer.alloc(200_000, 0x5a);
      expect(await c.set('acme:big', big)).toBe(true);
      expect((await c.get('acme:big')).value.equals(big)).toBe(true);
      const stats = await new Promise<Record<string, string>>((resolve, reject) => c.stats((err: Error | null, _server: string, s: Record<string, string>) => (err ? reject(err) : resolve(s))));
      expect(stats.isolation).toBeDefined();
      await c.flush();
      expect((await c.get('acme:n')).value).toBe(null);
    } finally {
      c.close();
    }
  });

  it('SASL PLAIN binds the connection: each user reads its own tenant, another tenant\'s prefix is refused', async () => {
    const a = memjs.Client.create(`a:pw-a@127.0.0.1:${auth.port}`, { retries: 0, logger: { log() {} } });
    const b = memjs.Client.create(`b:pw-b@127.0.0.1:${auth.port}`, { retries: 0, logger: { log() {} } });
    const wrong = memjs.Client.create(`a:pw-b@127.0.0.1:${auth.port}`, { retries: 0, logger: { log() {} } });
    try {
      expect(await b.set('secret', 'b-only')).toBe(true);
      expect(await b.set('b:secret', 'b-named')).toBe(true);
      expect((await a.get('secret')).value).toBe(null);
      expect(await a.set('secret', 'a-only')).toBe(true);
      expect((await b.get('secret')).value.toString()).toBe('b-only');
      expect((await a.get('secret')).value.toString()).toBe('a-only');
      await expect(a.get('b:secret')).rejects.toThrow(/authentication failed/); // memjs's words for status 0x20
      await expect(a.set('b:secret', 'stolen')).rejects.toThrow();
      expect((await b.get('b:secret')).value.toString()).toBe('b-named');
      await expect(wrong.get('secret')).rejects.toThrow();
    } finally {
      a.close();
      b.close();
      wrong.close();
    }
  });
});
