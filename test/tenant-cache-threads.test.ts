// The tenant cache across threads (issue 14's --threads; README "Threads").
// First what the threaded server relies on, shown on the cache's own tenant
// memory (memory.mjs): a worker adopts tenant b's key (key.handle()/adopt())
// and sits inside b's gate while the main thread, inside tenant a's gate,
// runs the fault injection's bug: a read past a's memory that lands on b's
// secret. Then the server itself at --threads 2: one store seen from both
// threads, the same LRU and cas answers as --threads 1, exact totals under
// concurrent increments and stores (the per-tenant lock), one tenant when
// both threads name a new one at once, and the same out-of-bounds read on
// thread 1 while thread 2 sits inside b's gate (debug hold).
// pku: a gate is the thread's own, the read dies with vmpk's report.
// mprotect: a gate is process-wide, the read returns b's secret (the
// documented limit of that backend with threads; the server warns at start).
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend, onPku } from './helpers/vmpk.js';
import { Client, crashReport, startServer, type CacheServer } from './helpers/tenant-cache.js';

const memoryUrl = new URL('../examples/tenant-cache/memory.mjs', import.meta.url).href;
const vmpkUrl = new URL('../dist/index.js', import.meta.url).href;
const SECRET = 'b-secret-0123456789';

// argv[1]: 'hold' (the worker holds b's gate during the read) or 'none' (no
// worker gate: the control).
const script = `
import { Worker } from 'node:worker_threads';
import koffi from 'koffi';
import { createMemory } from ${JSON.stringify(memoryUrl)};
const mode = process.argv[1];
const memory = createMemory({ isolation: 'vmpk' });
const a = memory.tenant('tenant a', 65536);
const b = memory.tenant('tenant b', 65536);
a.bytes();
b.write(() => b.bytes().set(Buffer.from(${JSON.stringify(SECRET)})));
const ctrl = new Int32Array(new SharedArrayBuffer(8));
const seen = new Uint8Array(new SharedArrayBuffer(${SECRET.length}));
let worker = null;
if (mode === 'hold') {
  // (The eval'd worker is a module too: --input-type=module carries over.)
  worker = new Worker(\`
    import { parentPort, workerData as d } from 'node:worker_threads';
    const { adopt } = await import(d.vmpk);
    const key = adopt(d.key);
    const bytes = key.regions[0].bytes;
    key.with('r', () => {
      d.seen.set(bytes.subarray(0, d.seen.length)); // proof that the gate is open here
      parentPort.postMessage('in the gate');
      Atomics.wait(d.ctrl, 1, 0, 60000); // inside b's gate until main is done
    });\`, { eval: true, workerData: { vmpk: ${JSON.stringify(vmpkUrl)}, key: b.key.handle(), ctrl, seen } });
  // Wait without blocking: the worker's start needs this thread's event loop.
  await new Promise((resolve, reject) => { worker.once('message', resolve); worker.once('error', reject); });
  process.stdout.write('worker read in its gate: ' + Buffer.from(seen).toString('latin1') + '\\n');
}
// The bug, on the thread serving tenant a: inside a's gate, a view computed
// from a's address that reaches b's first byte.
const view = new Uint8Array(koffi.view(a.address() + (b.address() - a.address()), ${SECRET.length}));
const leaked = a.write(() => Buffer.from(view).toString('latin1'));
process.stdout.write('main read: ' + leaked + '\\n');
Atomics.store(ctrl, 1, 1);
Atomics.notify(ctrl, 1);
await new Promise((r) => worker ? worker.on('exit', r) : r());
memory.close();
`;

function run(mode: 'hold' | 'none') {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, mode], { encoding: 'utf8', timeout: 120_000 });
  return { stdout: r.stdout, stderr: r.stderr, signal: r.signal, status: r.status };
}

const report = (thread: string) =>
  new RegExp(`^vmpk: SIGSEGV: read of key "tenant b" at 0x[0-9a-f]+ \\(region 0x[0-9a-f]+, 65536 bytes, offset (?:[0-9]|1[0-8])\\), thread ${thread}: no gate is open on this thread and the key's process-wide access is none$`, 'm');

describe(`tenant-cache across threads: one thread's gate and another thread's out-of-bounds read (${backend} backend)`, () => {
  it('control: with no gate open on b anywhere, the read dies with vmpk\'s report naming tenant b, and nothing leaks', () => {
    const r = run('none');
    expect(r.signal, r.stderr).toBe('SIGSEGV');
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(report('\\d+'));
  });

  it(
    onPku
      ? "pku: while a worker is inside b's gate, the main thread's read of b dies with vmpk's report, and nothing leaks"
      : "mprotect: while a worker is inside b's gate, b is open to every thread: the main thread's read returns b's secret (the documented limit)",
    () => {
      const r = run('hold');
      expect(r.stdout.split('\n')[0], r.stderr).toBe(`worker read in its gate: ${SECRET}`);
      if (onPku) {
        expect(r.signal, r.stderr).toBe('SIGSEGV');
        expect(r.stdout).toBe(`worker read in its gate: ${SECRET}\n`);
        expect(r.stdout).not.toContain('main read');
        expect(r.stderr).toMatch(report('\\d+'));
      } else {
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout).toBe(`worker read in its gate: ${SECRET}\nmain read: ${SECRET}\n`);
      }
    },
  );
});

const value = (key: string, flags: number, data: string) => `VALUE ${key} ${flags} ${data.length}\r\n${data}\r\n`;

/** The thread (1-based) that serves a connection, from its stats. */
async function threadOf(c: Client): Promise<number> {
  const m = /^STAT thread_id (\d+)\r$/m.exec(await c.call('stats\r\n'));
  if (m === null) throw new Error('no thread_id in stats');
  return Number(m[1]);
}

/** Connects until it has `per` connections served by each of the server's `threads` threads; closes the others. */
async function clientsByThread(port: number, threads: number, per = 1): Promise<Client[][]> {
  const by: Client[][] = Array.from({ length: threads }, () => []);
  // The kernel spreads connections over the threads; 200 tries leave a
  // chance of about 2^-150 that one thread got fewer than `per`.
  for (let i = 0; i < 200 && by.some((l) => l.length < per); i++) {
    const c = await Client.connect(port);
    const t = await threadOf(c);
    if (by[t - 1].length < per) by[t - 1].push(c);
    else c.close();
  }
  if (by.some((l) => l.length < per)) throw new Error('the kernel did not spread connections over every thread');
  return by;
}

const stat = (stats: string, name: string) => Number(new RegExp(`^STAT ${name} (\\d+)\r$`, 'm').exec(stats)?.[1]);

describe(`tenant-cache --threads 2 (${backend} backend)`, () => {
  let server: CacheServer;
  let t1: Client;
  let t2: Client;

  beforeAll(async () => {
    // 64 KiB per tenant, items of at most 1 KiB: 1,024 items of 64 bytes.
    server = await startServer(['--threads', '2', '--tenant-bytes', '64k', '--max-item-size', '1k', '--test-faults']);
    [[t1], [t2]] = await clientsByThread(server.port, 2);
  });
  afterAll(async () => {
    t1?.close();
    t2?.close();
    await server?.stop();
  });

  it('says it runs 2 threads; on mprotect it warns that concurrent requests are not isolated', () => {
    expect(server.banner).toMatch(/, 2 threads \((SO_REUSEPORT|one shared descriptor)\), TEST FAULTS ENABLED\)$/);
    const warning = "vmpk-cache: warning: --threads 2 on the mprotect backend: a gate opens a tenant's pages to every thread, " +
      'so a request served on another thread at the same moment is not isolated from that tenant (examples/tenant-cache/README.md, "Threads")';
    if (onPku) expect(server.stderr()).not.toContain('warning');
    else expect(server.stderr().split('\n')).toContain(warning);
  });

  it('answers from both threads: stats says which, and counts each thread\'s connections', async () => {
    expect(await threadOf(t1)).toBe(1);
    expect(await threadOf(t2)).toBe(2);
    const s = await t1.call('stats\r\n');
    expect(s).toContain('STAT threads 2\r\n');
    expect(stat(s, 'thread_1_connections')).toBeGreaterThanOrEqual(1);
    expect(stat(s, 'thread_2_connections')).toBeGreaterThanOrEqual(1);
    expect(stat(s, 'thread_1_connections') + stat(s, 'thread_2_connections')).toBe(stat(s, 'total_connections'));
    expect(await t2.call('stats\r\n')).toContain('STAT thread_id 2\r\n');
  });

  it('an item stored on thread 1 is read, replaced, deleted and counted on thread 2', async () => {
    expect(await t1.call('set s:a 7 0 5\r\nhello\r\n')).toBe('STORED\r\n');
    expect(await t2.call('get s:a\r\n')).toBe(value('s:a', 7, 'hello') + 'END\r\n');
    expect(await t2.call('append s:a 0 0 1\r\n!\r\n')).toBe('STORED\r\n');
    expect(await t1.call('get s:a\r\n')).toBe(value('s:a', 7, 'hello!') + 'END\r\n');
    expect(await t2.call('delete s:a\r\n')).toBe('DELETED\r\n');
    expect(await t1.call('get s:a\r\n')).toBe('END\r\n');
    expect(await t1.call('delete s:a\r\n')).toBe('NOT_FOUND\r\n');
  });

  it('cas: a value from gets on one thread is checked on the other; CAS values are unique across threads', async () => {
    expect(await t1.call('set c:x 0 0 1\r\n1\r\n')).toBe('STORED\r\n');
    const g1 = /^VALUE c:x 0 1 (\d+)\r\n1\r\nEND\r\n$/.exec(await t1.call('gets c:x\r\n'));
    const g2 = /^VALUE c:x 0 1 (\d+)\r\n1\r\nEND\r\n$/.exec(await t2.call('gets c:x\r\n'));
    expect(g1?.[1]).toBe(g2?.[1]);
    expect(await t2.call(`cas c:x 0 0 1 ${g1![1]}\r\n2\r\n`)).toBe('STORED\r\n');
    expect(await t1.call(`cas c:x 0 0 1 ${g1![1]}\r\n3\r\n`)).toBe('EXISTS\r\n');
    const after = /^VALUE c:x 0 1 (\d+)\r\n2\r\nEND\r\n$/.exec(await t1.call('gets c:x\r\n'));
    expect(Number(after![1])).toBeGreaterThan(Number(g1![1]));
    // Stores on both threads take CAS values from one counter: all different.
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const c = i % 2 ? t1 : t2;
      expect(await c.call(`set c:u${i} 0 0 1\r\nx\r\n`)).toBe('STORED\r\n');
      seen.add(/ (\d+)\r\n/.exec(await c.call(`gets c:u${i}\r\n`))![1]);
    }
    expect(seen.size).toBe(20);
  });

  it('incr/decr, touch and flush_all on one thread are seen on the other', async () => {
    expect(await t1.call('set n:c 0 0 2\r\n10\r\n')).toBe('STORED\r\n');
    expect(await t2.call('incr n:c 5\r\n')).toBe('15\r\n');
    expect(await t1.call('decr n:c 20\r\n')).toBe('0\r\n');
    expect(await t2.call('get n:c\r\n')).toBe(value('n:c', 0, '0 ') + 'END\r\n'); // as memcached: the length is kept
    expect(await t2.call('touch n:c -1\r\n')).toBe('TOUCHED\r\n');
    expect(await t1.call('get n:c\r\n')).toBe('END\r\n');
    expect(await t1.call('set f:1 0 0 1\r\na\r\nset g:1 0 0 1\r\nb\r\n')).toBe('STORED\r\nSTORED\r\n');
    expect(await t2.call('flush_all\r\n')).toBe('OK\r\n');
    expect(await t1.call('get f:1 g:1\r\n')).toBe('END\r\n');
  });
});

/** The LRU sequence of tenant-cache.test.ts's bound, with each command on the next of `clients` in turn. */
async function lruRun(clients: Client[]): Promise<string[]> {
  let i = 0;
  const next = () => clients[i++ % clients.length];
  const out: string[] = [];
  // 1,000 items of one 64-byte block each ("l:k0000" + 40 bytes: 47), then
  // k0000..k0009 read (most recently used), then 100 more: 76 evictions, of
  // the least recently used: k0010..k0085.
  const v = 'v'.repeat(40);
  const key = (n: number) => `l:k${String(n).padStart(4, '0')}`;
  for (let n = 0; n < 1000; n++) out.push(await next().call(`set ${key(n)} 0 0 40\r\n${v}\r\n`));
  for (let n = 0; n < 10; n++) out.push(await next().call(`get ${key(n)}\r\n`));
  for (let n = 1000; n < 1100; n++) out.push(await next().call(`set ${key(n)} 0 0 40\r\n${v}\r\n`));
  out.push(await next().call('debug tenant l:x\r\n'));
  for (const n of [0, 9, 10, 50, 85, 86, 999, 1099]) out.push(await next().call(`get ${key(n)}\r\n`));
  const s = await next().call('stats\r\n');
  out.push(`evictions ${stat(s, 'evictions')} curr_items ${stat(s, 'curr_items')}`);
  return out;
}

describe(`tenant-cache --threads 2 against --threads 1: LRU eviction (${backend} backend)`, () => {
  it('the same commands give the same replies, with the exact evictions', async () => {
    const args = ['--tenant-bytes', '64k', '--max-item-size', '1k', '--test-faults'];
    const one = await startServer(args);
    const two = await startServer(['--threads', '2', ...args]);
    try {
      const c1 = await Client.connect(one.port);
      const [[a], [b]] = await clientsByThread(two.port, 2);
      const r1 = await lruRun([c1]);
      const r2 = await lruRun([a, b]);
      expect(r2).toEqual(r1);
      const tail = r1.slice(-10);
      expect(tail[0]).toBe('TENANT 0 items 1024 bytes 48128 evictions 76 used 65536 limit 65536\r\n');
      const v = 'v'.repeat(40);
      expect(tail.slice(1, 9)).toEqual([
        value('l:k0000', 0, v) + 'END\r\n',
        value('l:k0009', 0, v) + 'END\r\n',
        'END\r\n',
        'END\r\n',
        'END\r\n',
        value('l:k0086', 0, v) + 'END\r\n',
        value('l:k0999', 0, v) + 'END\r\n',
        value('l:k1099', 0, v) + 'END\r\n',
      ]);
      expect(tail[9]).toBe('evictions 76 curr_items 1024');
      for (const c of [c1, a, b]) c.close();
    } finally {
      await one.stop();
      await two.stop();
    }
  });
});

describe(`tenant-cache --threads 2: concurrency (${backend} backend)`, () => {
  let server: CacheServer;
  let clients: Client[];

  beforeAll(async () => {
    server = await startServer(['--threads', '2', '--tenant-bytes', '64k', '--max-item-size', '1k', '--test-faults']);
    clients = (await clientsByThread(server.port, 2, 6)).flat();
  });
  afterAll(async () => {
    for (const c of clients ?? []) c.close();
    await server?.stop();
  });

  it('12 clients on both threads incrementing one counter 150 times each end at exactly 1800', async () => {
    expect(await clients[0].call('set k:counter 0 0 1\r\n0\r\n')).toBe('STORED\r\n');
    // Each client pipelines its increments: both threads run them at once.
    const replies = await Promise.all(
      clients.map((c) => c.call('incr k:counter 1\r\n'.repeat(150))),
    );
    const values = replies.flatMap((r) => r.split('\r\n').filter((l) => l !== '').map(Number));
    expect(values).toHaveLength(1800);
    // Every increment saw a different value: none was lost or applied twice.
    expect(new Set(values).size).toBe(1800);
    expect(Math.max(...values)).toBe(1800);
    expect(await clients[1].call('get k:counter\r\n')).toBe(value('k:counter', 0, '1800') + 'END\r\n');
  });

  it('12 clients storing 300 distinct keys each into one 64 KiB tenant: every store is an item or an eviction, and the allocator agrees', async () => {
    await Promise.all(
      clients.map((c, i) => c.call(Array.from({ length: 300 }, (_, n) => `set e:${i}-${n} 0 0 30\r\n${'x'.repeat(30)}\r\n`).join(''))),
    );
    const m = /^TENANT \d+ items (\d+) bytes (\d+) evictions (\d+) used (\d+) limit 65536\r\n$/.exec(await clients[0].call('debug tenant e:x\r\n'));
    expect(m).not.toBeNull();
    const [items, bytes, evictions, used] = m!.slice(1).map(Number);
    expect(items).toBe(1024); // 3,600 stores of one 64-byte block each into 1,024 blocks
    expect(evictions).toBe(3600 - 1024);
    expect(used).toBe(65536);
    // Keys are 5 to 8 bytes ("e:0-0" to "e:11-299"), values 30.
    expect(bytes).toBeGreaterThanOrEqual(1024 * 35);
    expect(bytes).toBeLessThanOrEqual(1024 * 38);
    // Exactly `items` of the 3,600 keys are there, each reading back whole.
    let hits = 0;
    for (const [i] of clients.entries()) {
      const got = await clients[i].call(`get ${Array.from({ length: 300 }, (_, n) => `e:${i}-${n}`).join(' ')}\r\n`);
      const found = [...got.matchAll(/VALUE (e:\d+-\d+) 0 30\r\n(x{30})\r\n/g)];
      expect(got.length).toBe(found.reduce((n, m) => n + m[0].length, 0) + 'END\r\n'.length);
      hits += found.length;
    }
    expect(hits).toBe(items);
  });

  it('both threads naming 40 new tenants at once make 40 tenants, each with every item', async () => {
    const before = stat(await clients[0].call('stats\r\n'), 'tenants');
    await Promise.all(
      clients.map((c, i) => c.call(Array.from({ length: 40 }, (_, n) => `set new${n}:from${i} 0 0 1\r\n${i % 10}\r\n`).join(''))),
    );
    const s = await clients[3].call('stats\r\n');
    expect(stat(s, 'tenants')).toBe(before + 40);
    for (const c of [clients[0], clients[clients.length - 1]]) {
      const want = Array.from({ length: 40 }, (_, n) => clients.map((_, i) => value(`new${n}:from${i}`, 0, String(i % 10))).join('')).join('');
      const got = await c.call(`get ${Array.from({ length: 40 }, (_, n) => clients.map((_, i) => `new${n}:from${i}`).join(' ')).join(' ')}\r\n`);
      expect(got).toBe(want + 'END\r\n');
    }
  });
});

describe(`tenant-cache --threads 2: a request on thread 1 reads tenant b while thread 2 is inside b's gate (${backend} backend)`, () => {
  const SECRET = 'b-secret-0123456789';
  const setup = `set a:x 0 0 1\r\nx\r\nset b:secret 0 0 ${SECRET.length}\r\n${SECRET}\r\n`;
  const report = new RegExp(
    '^vmpk: SIGSEGV: read of key "tenant b" at 0x[0-9a-f]+ \\(region 0x[0-9a-f]+, 4194304 bytes, offset (?:[89]|1[0-9]|2[0-6])\\), thread \\d+: no gate is open on this thread and the key\'s process-wide access is none$',
  );

  it('control: with isolation off, the same bug on either thread leaks and corrupts b\'s item', async () => {
    const server = await startServer(['--threads', '2', '--isolation', 'off', '--test-faults']);
    try {
      const [[c1], [c2]] = await clientsByThread(server.port, 2);
      expect(await c1.call(setup)).toBe('STORED\r\nSTORED\r\n');
      expect(await c2.call('debug oob-read a:x b:secret\r\n')).toBe(value('b:secret', 0, SECRET) + 'END\r\n');
      expect(await c1.call('debug oob-write a:x b:secret 66\r\n')).toBe('OK\r\n');
      expect(await c2.call('get b:secret\r\n')).toBe(value('b:secret', 0, `B${SECRET.slice(1)}`) + 'END\r\n');
    } finally {
      await server.stop();
    }
  });

  it('control: with no gate open on b, the read on thread 1 dies with vmpk\'s report naming tenant b, and nothing leaks', async () => {
    const server = await startServer(['--threads', '2', '--test-faults']);
    const [[c1]] = await clientsByThread(server.port, 2);
    expect(await c1.call(setup)).toBe('STORED\r\nSTORED\r\n');
    c1.socket.write('debug oob-read a:x b:secret\r\n');
    expect(await c1.closedByServer()).toBe('');
    expect(await crashReport(server)).toMatch(report);
  });

  it(
    onPku
      ? "pku: thread 2 sits inside b's gate; the read on thread 1 dies with vmpk's report naming tenant b, and nothing leaks"
      : "mprotect: thread 2 sits inside b's gate, which opens b to every thread: the read on thread 1 returns b's secret (the documented exposure)",
    async () => {
      const server = await startServer(['--threads', '2', '--test-faults']);
      try {
        const [[c1], [c2]] = await clientsByThread(server.port, 2);
        expect(await c1.call(setup)).toBe('STORED\r\nSTORED\r\n');
        expect(await c1.call('debug held\r\n')).toBe('HELD none\r\n');
        c2.socket.write('debug hold b:secret 120\r\n'); // answered on release
        for (let i = 0; ; i++) {
          const h = await c1.call('debug held\r\n');
          if (h === 'HELD 2\r\n') break;
          expect(h).toBe('HELD none\r\n');
          if (i === 2000) throw new Error('thread 2 never entered the gate');
          await new Promise((r) => setTimeout(r, 5));
        }
        if (onPku) {
          c1.socket.write('debug oob-read a:x b:secret\r\n');
          expect(await c1.closedByServer()).toBe('');
          expect(await c2.closedByServer()).toBe('');
          expect(await crashReport(server)).toMatch(report);
        } else {
          expect(await c1.call('debug oob-read a:x b:secret\r\n')).toBe(value('b:secret', 0, SECRET) + 'END\r\n');
          expect(await c1.call('debug release\r\n')).toBe('OK\r\n');
          await c2.until((b) => b.toString('latin1') === 'RELEASED\r\n');
          expect(c2.take()).toBe('RELEASED\r\n');
          expect(await c2.call('debug held\r\n')).toBe('HELD none\r\n');
        }
      } finally {
        await server.stop();
      }
    },
  );
});

describe(`tenant-cache --threads 2 --auth-file: a connection's binding holds on every thread (${backend} backend)`, () => {
  it("user a's item, stored on thread 1, is a's on thread 2; b:secret is refused there; b's own 'secret' is another item", async () => {
    const authFile = new URL('./fixtures/tenant-cache/auth.txt', import.meta.url).pathname;
    const server = await startServer(['--threads', '2', '--auth-file', authFile, '--tenant-bytes', '64k', '--max-item-size', '1k']);
    const opened: Client[] = [];
    try {
      const login = async (user: string) => {
        const c = await Client.connect(server.port);
        opened.push(c);
        const cred = `${user} pw-${user}`;
        expect(await c.call(`set auth 0 0 ${cred.length}\r\n${cred}\r\n`)).toBe('STORED\r\n');
        return c;
      };
      const on: Client[] = [];
      for (let i = 0; i < 200 && (on[1] === undefined || on[2] === undefined); i++) {
        const c = await login('a');
        on[await threadOf(c)] ??= c;
      }
      expect(await on[1].call('set secret 0 0 6\r\nsecret\r\n')).toBe('STORED\r\n');
      expect(await on[2].call('get secret\r\n')).toBe(value('secret', 0, 'secret') + 'END\r\n');
      expect(await on[2].call('get a:secret\r\n')).toBe('END\r\n'); // another key of a's, as on one thread (tenant-cache-auth.test.ts)
      expect(await on[2].call('get b:secret\r\n')).toBe('CLIENT_ERROR access denied: the key names another tenant\r\n');
      const b = await login('b');
      expect(await b.call('get secret\r\n')).toBe('END\r\n');
      expect(await b.call('set secret 0 0 1\r\nB\r\n')).toBe('STORED\r\n');
      expect(await on[1].call('get secret\r\n')).toBe(value('secret', 0, 'secret') + 'END\r\n');
      expect(stat(await b.call('stats\r\n'), 'tenants')).toBe(2);
    } finally {
      for (const c of opened) c.close();
      await server.stop();
    }
  });
});
