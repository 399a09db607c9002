// examples/tenant-cache: the memcached text protocol with exact replies,
// per-tenant LRU bounds with exact counts, and the isolation proof: a
// request handler's out-of-bounds access into another tenant's memory kills
// the server by SIGSEGV with vmpk's report (pku in the guest, mprotect on the
// host), where the same bug with isolation off leaks and corrupts.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend } from './helpers/vmpk.js';
import { Client, startServer, type CacheServer } from './helpers/tenant-cache.js';

const value = (key: string, flags: number, data: string, cas?: number) =>
  `VALUE ${key} ${flags} ${data.length}${cas === undefined ? '' : ` ${cas}`}\r\n${data}\r\n`;

describe(`tenant-cache protocol (${backend} backend)`, () => {
  let server: CacheServer;
  let c: Client;

  beforeAll(async () => {
    // 64 KiB per tenant, items of at most 1 KiB: 1,024 items of 64 bytes.
    server = await startServer(['--tenant-bytes', '64k', '--max-item-size', '1k', '--test-faults']);
    c = await Client.connect(server.port);
  });
  afterAll(async () => {
    c?.close();
    await server?.stop();
  });

  it('says which memory it uses', () => {
    expect(server.banner).toContain(`(vmpk ${backend}`);
    expect(server.banner).toContain('65536 bytes each');
  });

  it('set, get, gets, multi-get', async () => {
    expect(await c.call('set p:a 5 0 3\r\nabc\r\n')).toBe('STORED\r\n');
    expect(await c.call('set p:b 4294967295 0 0\r\n\r\n')).toBe('STORED\r\n');
    expect(await c.call('get p:a\r\n')).toBe(value('p:a', 5, 'abc') + 'END\r\n');
    expect(await c.call('get p:a p:missing p:b p:a\r\n')).toBe(
      value('p:a', 5, 'abc') + value('p:b', 4294967295, '') + value('p:a', 5, 'abc') + 'END\r\n',
    );
    const gets = await c.call('gets p:a\r\n');
    expect(gets).toMatch(/^VALUE p:a 5 3 \d+\r\nabc\r\nEND\r\n$/);
    expect(await c.call('get p:nothing\r\n')).toBe('END\r\n');
  });

  it('a value may hold any bytes, CR LF included', async () => {
    const data = 'x\r\ny\0\xff\r\n';
    expect(await c.call(`set p:bin 0 0 ${data.length}\r\n${data}\r\n`)).toBe('STORED\r\n');
    expect(await c.call('get p:bin\r\n')).toBe(value('p:bin', 0, data) + 'END\r\n');
  });

  it('add, replace, append, prepend', async () => {
    expect(await c.call('add p:n 1 0 1\r\nA\r\n')).toBe('STORED\r\n');
    expect(await c.call('add p:n 2 0 1\r\nB\r\n')).toBe('NOT_STORED\r\n');
    expect(await c.call('replace p:none 0 0 1\r\nC\r\n')).toBe('NOT_STORED\r\n');
    expect(await c.call('replace p:n 3 0 2\r\nCD\r\n')).toBe('STORED\r\n');
    expect(await c.call('append p:n 9 0 2\r\nEF\r\n')).toBe('STORED\r\n');
    expect(await c.call('prepend p:n 9 0 2\r\nAB\r\n')).toBe('STORED\r\n');
    expect(await c.call('append p:none 0 0 1\r\nx\r\n')).toBe('NOT_STORED\r\n');
    expect(await c.call('prepend p:none 0 0 1\r\nx\r\n')).toBe('NOT_STORED\r\n');
    expect(await c.call('get p:n\r\n')).toBe(value('p:n', 3, 'ABCDEF') + 'END\r\n'); // flags kept by append/prepend
  });

  it('cas: STORED with the current unique, EXISTS after a change, NOT_FOUND without the item', async () => {
    await c.call('set p:c 0 0 1\r\n1\r\n');
    const unique = Number(/^VALUE p:c 0 1 (\d+)\r\n/.exec(await c.call('gets p:c\r\n'))![1]);
    expect(await c.call(`cas p:c 7 0 1 ${unique}\r\n2\r\n`)).toBe('STORED\r\n');
    expect(await c.call(`cas p:c 7 0 1 ${unique}\r\n3\r\n`)).toBe('EXISTS\r\n');
    expect(await c.call(`cas p:gone 0 0 1 ${unique}\r\n3\r\n`)).toBe('NOT_FOUND\r\n');
    const after = await c.call('gets p:c\r\n');
    expect(after).toMatch(new RegExp(`^VALUE p:c 7 1 ${unique + 1}\\r\\n2\\r\\nEND\\r\\n$`));
  });

  it('delete, incr, decr (64-bit wrap, floor at 0), touch', async () => {
    expect(await c.call('delete p:none\r\n')).toBe('NOT_FOUND\r\n');
    await c.call('set p:d 0 0 1\r\nx\r\n');
    expect(await c.call('delete p:d\r\n')).toBe('DELETED\r\n');
    expect(await c.call('get p:d\r\n')).toBe('END\r\n');
    expect(await c.call('set p:i 0 0 2\r\n10\r\n')).toBe('STORED\r\n');
    expect(await c.call('incr p:i 5\r\n')).toBe('15\r\n');
    expect(await c.call('decr p:i 100\r\n')).toBe('0\r\n');
    expect(await c.call('set p:i 0 0 20\r\n18446744073709551615\r\n')).toBe('STORED\r\n');
    expect(await c.call('incr p:i 2\r\n')).toBe('1\r\n');
    expect(await c.call('incr p:none 1\r\n')).toBe('NOT_FOUND\r\n');
    expect(await c.call('incr p:n 1\r\n')).toBe('CLIENT_ERROR cannot increment or decrement non-numeric value\r\n');
    expect(await c.call('incr p:i -1\r\n')).toBe('CLIENT_ERROR invalid numeric delta argument\r\n');
    expect(await c.call('touch p:i 100\r\n')).toBe('TOUCHED\r\n');
    expect(await c.call('touch p:none 100\r\n')).toBe('NOT_FOUND\r\n');
  });

  it('noreply: no reply at all for storage, delete, incr, touch, verbosity', async () => {
    expect(
      await c.call(
        'set p:q 0 0 1 noreply\r\n1\r\nadd p:q 0 0 1 noreply\r\n2\r\nincr p:q 4 noreply\r\ntouch p:q 0 noreply\r\n' +
          'verbosity 1 noreply\r\nverbosity noreply\r\n',
      ),
    ).toBe('');
    expect(await c.call('get p:q\r\n')).toBe(value('p:q', 0, '5') + 'END\r\n');
    expect(await c.call('delete p:q noreply\r\nget p:q\r\n')).toBe('END\r\n');
  });

  it('exptime: relative seconds, absolute unix time above 30 days, negative means expired', async () => {
    const now = Math.floor(Date.now() / 1000);
    expect(await c.call('set e:rel 0 100 1\r\nr\r\n')).toBe('STORED\r\n');
    expect(await c.call(`set e:abs 0 ${now + 1000} 1\r\na\r\n`)).toBe('STORED\r\n');
    expect(await c.call('set e:neg 0 -1 1\r\nn\r\n')).toBe('STORED\r\n');
    expect(await c.call('set e:past 0 2592001 1\r\np\r\n')).toBe('STORED\r\n'); // 1970: already gone
    expect(await c.call('get e:rel e:abs e:neg e:past\r\n')).toBe(value('e:rel', 0, 'r') + value('e:abs', 0, 'a') + 'END\r\n');
    expect(await c.call('debug clock 101\r\n')).toBe('OK\r\n'); // test mode: the server's clock moves on
    expect(await c.call('get e:rel e:abs\r\n')).toBe(value('e:abs', 0, 'a') + 'END\r\n');
    expect(await c.call('touch e:abs 10\r\n')).toBe('TOUCHED\r\n');
    expect(await c.call('debug clock 11\r\n')).toBe('OK\r\n');
    expect(await c.call('get e:abs\r\n')).toBe('END\r\n');
    expect(await c.call('set e:neg 0 0 1\r\nn\r\nset e:neg 0 -1 1\r\nm\r\nget e:neg\r\n')).toBe('STORED\r\nSTORED\r\nEND\r\n');
  });

  it('tenants are separate key spaces: the prefix before ":" names the tenant', async () => {
    expect(await c.call('set red:k 0 0 3\r\nred\r\nset blue:k 0 0 4\r\nblue\r\n')).toBe('STORED\r\nSTORED\r\n');
    expect(await c.call('get red:k blue:k\r\n')).toBe(value('red:k', 0, 'red') + value('blue:k', 0, 'blue') + 'END\r\n');
    const red = await c.call('debug tenant red:x\r\n');
    const blue = await c.call('debug tenant blue:x\r\n');
    expect(red).toMatch(/^TENANT \d+ items 1 bytes 8 evictions 0 used 64 limit 65536\r\n$/);
    expect(blue).toMatch(/^TENANT \d+ items 1 bytes 10 evictions 0 used 64 limit 65536\r\n$/);
    expect(red).not.toBe(blue);
  });

  it('evicts least recently used items at the tenant bound, with exact counts, and only in that tenant', async () => {
    await c.call('set other:keep 0 0 4\r\nkeep\r\n');
    const evictionsBefore = Number(/STAT evictions (\d+)\r\n/.exec(await c.call('stats\r\n'))![1]);
    const v = 'v'.repeat(55); // "lru:kNNNN" is 9 bytes: 64 bytes an item, 1,024 fit in 64 KiB
    let batch = '';
    for (let i = 0; i < 1024; i++) batch += `set lru:k${String(i).padStart(4, '0')} 0 0 55 noreply\r\n${v}\r\n`;
    expect(await c.call(batch)).toBe('');
    expect(await c.call('debug tenant lru:x\r\n')).toMatch(/ items 1024 bytes 65536 evictions 0 used 65536 limit 65536\r\n$/);
    // Use k0000, so k0001 is now the least recently used.
    expect(await c.call('get lru:k0000\r\n')).toBe(value('lru:k0000', 0, v) + 'END\r\n');
    batch = '';
    for (let i = 1024; i < 1100; i++) batch += `set lru:k${String(i).padStart(4, '0')} 0 0 55 noreply\r\n${v}\r\n`;
    expect(await c.call(batch)).toBe('');
    expect(await c.call('debug tenant lru:x\r\n')).toMatch(/ items 1024 bytes 65536 evictions 76 used 65536 limit 65536\r\n$/);
    expect(await c.call('get lru:k0000 lru:k0001 lru:k0076 lru:k0077 lru:k1099\r\n')).toBe(
      value('lru:k0000', 0, v) + value('lru:k0077', 0, v) + value('lru:k1099', 0, v) + 'END\r\n',
    );
    const stats = await c.call('stats\r\n');
    expect(Number(/STAT evictions (\d+)\r\n/.exec(stats)![1]) - evictionsBefore).toBe(76);
    expect(await c.call('get other:keep\r\n')).toBe(value('other:keep', 0, 'keep') + 'END\r\n');
  });

  it('a larger item evicts the least recently used small items until a block of its size is free', async () => {
    // A fresh tenant fills its memory in address order, so the 16 oldest
    // 64-byte items are the 16 blocks that merge into one 1 KiB block.
    const v = 'v'.repeat(55);
    let batch = '';
    for (let i = 0; i < 1024; i++) batch += `set big:k${String(i).padStart(4, '0')} 0 0 55 noreply\r\n${v}\r\n`;
    expect(await c.call(batch)).toBe('');
    expect(await c.call(`set big:large 0 0 1000\r\n${'b'.repeat(1000)}\r\n`)).toBe('STORED\r\n');
    expect(await c.call('debug tenant big:x\r\n')).toMatch(/ items 1009 bytes 65521 evictions 16 used 65536 limit 65536\r\n$/);
    expect(await c.call('get big:k0015 big:k0016 big:large\r\n')).toBe(
      value('big:k0016', 0, v) + value('big:large', 0, 'b'.repeat(1000)) + 'END\r\n',
    );
  });

  it('flush_all empties every tenant; stats and version answer', async () => {
    expect(await c.call('flush_all\r\n')).toBe('OK\r\n');
    expect(await c.call('get red:k blue:k p:a lru:k1099\r\n')).toBe('END\r\n');
    expect(await c.call('debug tenant lru:x\r\n')).toMatch(/ items 0 bytes 0 evictions \d+ used 0 limit 65536\r\n$/);
    const stats = await c.call('stats\r\n');
    expect(stats).toMatch(/^STAT pid \d+\r\n/);
    expect(stats).toContain('STAT curr_items 0\r\n');
    expect(stats).toContain(`STAT vmpk_backend ${backend}\r\n`);
    expect(stats).toMatch(/STAT vmpk_gates [1-9]\d*\r\n/);
    expect(stats.endsWith('END\r\n')).toBe(true);
    expect(await c.call('flush_all 0 noreply\r\nflush_all noreply\r\n')).toBe('');
  });

  it('a command split across packets is read as one', async () => {
    c.socket.write('se');
    await new Promise((r) => setTimeout(r, 20));
    c.socket.write('t p:split 0 0 5\r\nab');
    await new Promise((r) => setTimeout(r, 20));
    expect(await c.call('cde\r\nget p:split\r\n')).toBe('STORED\r\n' + value('p:split', 0, 'abcde') + 'END\r\n');
  });

  it('quit closes the connection', async () => {
    const q = await Client.connect(server.port);
    q.socket.write('quit\r\n');
    expect(await q.closedByServer()).toBe('');
  });
});

describe(`tenant-cache isolation: an out-of-bounds access into another tenant (${backend} backend)`, () => {
  // The attacker's tenant is named first, so the victim's memory lies after
  // it; the fault command aims at the first byte of the victim's value.
  const setup = 'set a:x 0 0 3\r\nabc\r\nset b:secret 0 0 7\r\nhunter2\r\n';

  it('with isolation off the bug leaks and corrupts the other tenant (the control)', async () => {
    const server = await startServer(['--isolation', 'off', '--test-faults']);
    try {
      const c = await Client.connect(server.port);
      expect(await c.call(setup)).toBe('STORED\r\nSTORED\r\n');
      expect(await c.call('debug oob-read a:x b:secret\r\n')).toBe(value('b:secret', 0, 'hunter2') + 'END\r\n');
      expect(await c.call('debug oob-write a:x b:secret 72\r\n')).toBe('OK\r\n');
      expect(await c.call('get b:secret\r\n')).toBe(value('b:secret', 0, 'Hunter2') + 'END\r\n');
      c.close();
    } finally {
      await server.stop();
    }
  });

  it.each([
    ['oob-write', 'debug oob-write a:x b:secret 72\r\n', 'write'],
    ['oob-read', 'debug oob-read a:x b:secret\r\n', 'read'],
  ])('with vmpk, %s dies by SIGSEGV with the report naming the victim tenant, and nothing leaks', async (_name, command, access) => {
    const server = await startServer(['--test-faults']);
    const c = await Client.connect(server.port);
    expect(await c.call(setup)).toBe('STORED\r\nSTORED\r\n');
    c.socket.write(command);
    const rest = await c.closedByServer();
    expect(rest).toBe(''); // no byte of the secret came back
    const { signal } = await server.exited;
    expect(signal, server.stderr()).toBe('SIGSEGV');
    const lines = server.stderr().split('\n');
    expect(lines).toContain('vmpk-cache: test fault: ' + `${access === 'write' ? 'oob-write' : 'oob-read'} from tenant 0 into tenant 1`);
    const report = lines.filter((l) => l.startsWith('vmpk: '));
    // The victim's value is bytes 8 to 14 of its region (after the key
    // "b:secret"): a one-byte write faults at 8; a copy's first faulting load
    // may be any of them (memcpy may load the tail first).
    const offset = access === 'write' ? '8' : '(?:8|9|1[0-4])';
    expect(report, server.stderr()).toHaveLength(1);
    expect(report[0]).toMatch(
      new RegExp(`^vmpk: SIGSEGV: ${access} of key "tenant b" at 0x[0-9a-f]+ \\(region 0x[0-9a-f]+, 4194304 bytes, offset ${offset}\\), thread \\d+: no gate is open on this thread and the key's process-wide access is none$`),
    );
  });

  it('the supervisor script restarts the server after the fault; the new one starts empty and serves', async () => {
    const script = fileURLToPath(new URL('../examples/tenant-cache/supervise.sh', import.meta.url));
    const sup = spawn('bash', [script, '--port', '0', '--test-faults'], {
      env: { ...process.env, VMPK_CACHE_RESTART_DELAY: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const exited = new Promise<number | null>((resolve) => sup.on('exit', (code) => resolve(code)));
    const ports: number[] = [];
    let wake = () => {};
    sup.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      ports.splice(0, ports.length, ...[...out.matchAll(/listening on 127\.0\.0\.1:(\d+) /g)].map((m) => Number(m[1])));
      wake();
    });
    sup.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    const listening = async (n: number) => {
      const deadline = Date.now() + 120_000;
      while (ports.length < n) {
        if (Date.now() > deadline || sup.exitCode !== null) throw new Error(`no server ${n}: ${out} ${err}`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 200);
        });
      }
      return ports[n - 1]!;
    };
    try {
      const c = await Client.connect(await listening(1));
      expect(await c.call(setup)).toBe('STORED\r\nSTORED\r\n');
      c.socket.write('debug oob-write a:x b:secret 72\r\n');
      expect(await c.closedByServer()).toBe('');
      const d = await Client.connect(await listening(2));
      expect(await d.call('get b:secret a:x\r\nset b:new 0 0 1\r\n1\r\n')).toBe('END\r\nSTORED\r\n');
      d.close();
      expect(err).toContain('vmpk-cache-supervise: the server died (signal SEGV); restart 1 of 10');
      expect(err).toMatch(/^vmpk: SIGSEGV: write of key "tenant b" /m);
    } finally {
      sup.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});
