// examples/tenant-cache under bad input: each case gets the protocol's error
// reply (or, for a line that never ends, an error and a closed connection),
// and a bystander client connected all along keeps being served.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend, prng } from './helpers/vmpk.js';
import { Client, startServer, type CacheServer } from './helpers/tenant-cache.js';

describe(`tenant-cache bad input (${backend} backend)`, () => {
  let server: CacheServer;
  let bystander: Client;
  let round = 0;

  beforeAll(async () => {
    server = await startServer(['--tenant-bytes', '64k', '--max-item-size', '1k']);
    bystander = await Client.connect(server.port);
    expect(await bystander.call('set by:stander 0 0 5\r\nstill\r\n')).toBe('STORED\r\n');
  });
  afterAll(async () => {
    bystander?.close();
    // The server survived everything: it ends by the SIGTERM stop() sends, cleanly.
    if (server) {
      await server.stop();
      expect(await server.exited).toEqual({ code: 0, signal: null });
      expect(server.stderr()).toBe('');
    }
  });

  /** The bystander is served, and sees the data of earlier rounds. */
  async function bystanderServed() {
    round++;
    expect(await bystander.call(`set by:round 0 0 ${String(round).length}\r\n${round}\r\nget by:stander by:round\r\n`)).toBe(
      `STORED\r\nVALUE by:stander 0 5\r\nstill\r\nVALUE by:round 0 ${String(round).length}\r\n${round}\r\nEND\r\n`,
    );
  }

  async function fresh(): Promise<Client> {
    return Client.connect(server.port);
  }

  it('unknown commands and empty lines: ERROR, and the connection goes on', async () => {
    const c = await fresh();
    expect(await c.call('bogus\r\nGET x\r\n\r\nset\r\nget\r\nincr\r\n')).toBe('ERROR\r\n'.repeat(6));
    // Without --test-faults the debug commands do not exist.
    expect(await c.call('debug clock 100\r\ndebug oob-write a:x b:y 1\r\ndebug tenant a:x\r\n')).toBe('ERROR\r\n'.repeat(3));
    expect(await c.call('set ok:1 0 0 1\r\n1\r\n')).toBe('STORED\r\n');
    c.close();
    await bystanderServed();
  });

  it('keys longer than 250 bytes: CLIENT_ERROR, a storage command\'s data block is skipped', async () => {
    const c = await fresh();
    const long = 'k'.repeat(251);
    const max = 'k'.repeat(250);
    expect(await c.call(`get ${long}\r\n`)).toBe('CLIENT_ERROR bad command line format\r\n');
    expect(await c.call(`get ok:1 ${long}\r\n`)).toBe('CLIENT_ERROR bad command line format\r\n');
    expect(await c.call(`set ${long} 0 0 3\r\nabc\r\n`)).toBe('CLIENT_ERROR bad command line format\r\n');
    expect(await c.call(`delete ${long}\r\nincr ${long} 1\r\ntouch ${long} 1\r\n`)).toBe('CLIENT_ERROR bad command line format\r\n'.repeat(3));
    expect(await c.call(`set ${max} 0 0 3\r\nabc\r\nget ${max}\r\n`)).toBe(`STORED\r\nVALUE ${max} 0 3\r\nabc\r\nEND\r\n`);
    c.close();
    await bystanderServed();
  });

  it('bad numbers in a storage command: CLIENT_ERROR', async () => {
    const c = await fresh();
    expect(await c.call('set x 0 0 -1\r\n')).toBe('CLIENT_ERROR bad command line format\r\n');
    expect(await c.call('set x 0 0 abc\r\n')).toBe('CLIENT_ERROR bad command line format\r\n');
    expect(await c.call('set x 0 0\r\n')).toBe('CLIENT_ERROR bad command line format\r\n');
    expect(await c.call('set x 4294967296 0 1\r\nz\r\n')).toBe('CLIENT_ERROR bad command line format\r\n');
    expect(await c.call('set x 0 soon 1\r\nz\r\n')).toBe('CLIENT_ERROR bad command line format\r\n');
    expect(await c.call('set x 0 0 1 maybe\r\nz\r\n')).toBe('CLIENT_ERROR bad command line format\r\n');
    expect(await c.call('cas x 0 0 1 abc\r\nz\r\n')).toBe('CLIENT_ERROR bad command line format\r\n');
    expect(await c.call('touch x soon\r\n')).toBe('CLIENT_ERROR invalid exptime argument\r\n');
    expect(await c.call('delete x y z\r\n')).toBe('CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n');
    expect(await c.call('get x\r\n')).toBe('END\r\n');
    c.close();
    await bystanderServed();
  });

  it('a data block longer than its byte count: CLIENT_ERROR bad data chunk, nothing stored', async () => {
    const c = await fresh();
    // 3 bytes announced, 6 sent: "abc" plus "de" where CR LF belongs is a
    // bad chunk; what follows ("f") is read as the next command.
    expect(await c.call('set w:x 0 0 3\r\nabcdef\r\n')).toBe('CLIENT_ERROR bad data chunk\r\nERROR\r\n');
    expect(await c.call('get w:x\r\n')).toBe('END\r\n');
    c.close();
    await bystanderServed();
  });

  it('an item over the size limit: SERVER_ERROR object too large for cache, the block is skipped', async () => {
    const c = await fresh();
    expect(await c.call(`set big 0 0 2000\r\n${'x'.repeat(2000)}\r\n`)).toBe('SERVER_ERROR object too large for cache\r\n');
    expect(await c.call('set big 0 0 1\r\ny\r\nappend big 0 0 1100\r\n' + 'z'.repeat(1100) + '\r\n')).toBe(
      'STORED\r\nSERVER_ERROR object too large for cache\r\n',
    );
    expect(await c.call('get big\r\n')).toBe('VALUE big 0 1\r\ny\r\nEND\r\n');
    c.close();
    await bystanderServed();
  });

  it('binary junk: ERROR for each line, and the connection goes on', async () => {
    const c = await fresh();
    const rand = prng(6);
    const lines = 20;
    const parts: Buffer[] = [];
    for (let i = 0; i < lines; i++) {
      // Bytes no command starts with: control bytes (not LF) and 0x80-0xff.
      const junk = Buffer.alloc(1 + Math.floor(rand() * 300));
      for (let j = 0; j < junk.length; j++) {
        const b = Math.floor(rand() * 160);
        junk[j] = b < 32 ? (b === 10 ? 0 : b) : 0x80 + (b - 32);
      }
      parts.push(junk, Buffer.from('\r\n'));
    }
    // A memcached binary-protocol request header (magic 0x80, a GET) as well.
    parts.push(Buffer.from([0x80, 0x00, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('abc\r\n'));
    expect(await c.call(Buffer.concat(parts))).toBe('ERROR\r\n'.repeat(lines + 1));
    c.close();
    await bystanderServed();
  });

  it('a client that disconnects in the middle of a value stores nothing', async () => {
    const c = await fresh();
    c.socket.write('set cut:x 0 0 100\r\n' + 'y'.repeat(50));
    await new Promise((r) => setTimeout(r, 50));
    c.socket.destroy();
    const d = await fresh();
    expect(await d.call('get cut:x\r\n')).toBe('END\r\n');
    d.close();
    await bystanderServed();
  });

  it('a line that never ends: CLIENT_ERROR line too long, then the server closes that connection only', async () => {
    const c = await fresh();
    c.socket.write('g' + 'e'.repeat(70_000));
    expect(await c.closedByServer()).toBe('CLIENT_ERROR line too long\r\n');
    await bystanderServed();
  });

  it('many clients misbehaving at once, interleaved with good ones', async () => {
    const bad = await Promise.all(Array.from({ length: 20 }, () => fresh()));
    const good = await Promise.all(Array.from({ length: 5 }, () => fresh()));
    bad.forEach((c, i) => c.socket.write(i % 2 ? 'set m:x 0 0 10\r\nabc' : Buffer.from([0xff, 0xfe, 0x00, 0x0d])));
    const replies = await Promise.all(good.map((c, i) => c.call(`set m:${i} 0 0 1\r\n${i}\r\nget m:${i}\r\n`)));
    replies.forEach((r, i) => expect(r).toBe(`STORED\r\nVALUE m:${i} 0 1\r\n${i}\r\nEND\r\n`));
    bad.forEach((c) => c.close());
    good.forEach((c) => c.close());
    await bystanderServed();
    const stats = await bystander.call('stats\r\n');
    expect(stats).toMatch(/STAT curr_connections \d+\r\n/);
  });

  it('a client naming more tenants than --max-tenants: SERVER_ERROR for stores, lookups create no tenant', async () => {
    const small = await startServer(['--max-tenants', '2', '--tenant-bytes', '64k', '--max-item-size', '1k']);
    try {
      const c = await Client.connect(small.port);
      expect(await c.call('set a:1 0 0 1\r\n1\r\nset b:1 0 0 1\r\n1\r\nset c:1 0 0 1\r\n1\r\n')).toBe(
        'STORED\r\nSTORED\r\nSERVER_ERROR out of tenants\r\n',
      );
      let lookups = '';
      for (let i = 0; i < 100; i++) lookups += `get t${i}:k\r\ndelete t${i}:k\r\nincr t${i}:k 1\r\ntouch t${i}:k 1\r\n`;
      expect(await c.call(lookups)).toBe('END\r\nNOT_FOUND\r\nNOT_FOUND\r\nNOT_FOUND\r\n'.repeat(100));
      expect(await c.call('get a:1 b:1\r\n')).toBe('VALUE a:1 0 1\r\n1\r\nVALUE b:1 0 1\r\n1\r\nEND\r\n');
      const stats = await c.call('stats\r\n');
      expect(stats).toContain('STAT tenants 2\r\n');
      expect(stats).toContain(`STAT vmpk_live_vkeys 2\r\n`);
      c.close();
    } finally {
      await small.stop();
    }
    await bystanderServed();
  });
});
