// --auth-file binds each connection to one tenant (memcached's -Y text
// authentication: "set <any> 0 0 <len>" whose data is "user password").
// Before it, every other command gets memcached's error; after it, every key
// the connection names lives in its user's tenant, and a key whose prefix
// names another tenant is refused. The auth exchange is checked side by side
// with the real memcached where it is installed (required under CI).
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend } from './helpers/vmpk.js';
import { Client, exchange, haveMemcached, startMemcached, startServer, type CacheServer } from './helpers/tenant-cache.js';

const authFile = fileURLToPath(new URL('./fixtures/tenant-cache/auth.txt', import.meta.url));
const DENIED = 'CLIENT_ERROR access denied: the key names another tenant\r\n';
const required = process.env.CI === 'true' || process.env.VMPK_VM === '1';

async function login(port: number, user: string, password: string): Promise<Client> {
  const c = await Client.connect(port);
  const cred = `${user} ${password}`;
  c.socket.write(`set auth 0 0 ${cred.length}\r\n${cred}\r\n`);
  await c.until((b) => b.toString('latin1').endsWith('\r\n'));
  expect(c.take()).toBe('STORED\r\n');
  return c;
}

describe(`tenant-cache --auth-file (${backend} backend)`, () => {
  let server: CacheServer;

  beforeAll(async () => {
    server = await startServer(['--auth-file', authFile, '--tenant-bytes', '64k', '--max-item-size', '1k']);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('the banner says how many users', () => {
    expect(server.banner).toMatch(/, 2 authenticated tenants\)$/);
  });

  it('before authentication: CLIENT_ERROR unauthenticated, and nothing more is answered', async () => {
    for (const cmd of ['get a:x', 'version', 'stats', 'delete x', 'bogus', 'flush_all']) {
      expect(await exchange(server.port, `${cmd}\r\nversion\r\n`)).toEqual({ reply: 'CLIENT_ERROR unauthenticated\r\n', closed: true });
    }
  });

  it('a wrong password, an unknown user or a malformed token: CLIENT_ERROR authentication failure, and another try works', async () => {
    const failure = 'CLIENT_ERROR authentication failure\r\n';
    const format = 'CLIENT_ERROR bad authentication token format\r\n';
    for (const [cred, reply] of [['a pw-b', failure], ['c pw-a', failure], ['a pw-aX', failure], ['a pw-', failure], [' pw-a', format], ['a', format], ['', format]]) {
      const c = await Client.connect(server.port);
      c.socket.write(`set auth 0 0 ${cred.length}\r\n${cred}\r\n`);
      await c.until((b) => b.toString('latin1').endsWith('\r\n'));
      expect(c.take(), cred).toBe(reply);
      expect(await c.call('set auth 0 0 6\r\na pw-a\r\n')).toBe('STORED\r\n');
      c.close();
    }
  });

  it('a bound connection keeps its keys in its tenant; another tenant\'s prefix is refused on every command', async () => {
    const a = await login(server.port, 'a', 'pw-a');
    const b = await login(server.port, 'b', 'pw-b');
    expect(await b.call('set secret 0 0 6\r\nb-only\r\nset b:secret 0 0 7\r\nb-named\r\n')).toBe('STORED\r\nSTORED\r\n');
    // a's unprefixed "secret" is a's own item, not b's.
    expect(await a.call('get secret\r\n')).toBe('END\r\n');
    expect(await a.call('set secret 0 0 6\r\na-only\r\nget secret a:secret\r\n')).toBe('STORED\r\nVALUE secret 0 6\r\na-only\r\nEND\r\n');
    // Naming b's tenant is refused, in a multi-get too (nothing of the line is answered).
    expect(await a.call('get b:secret\r\n')).toBe(DENIED);
    expect(await a.call('get secret b:secret\r\n')).toBe(DENIED);
    expect(await a.call('gets b:secret\r\n')).toBe(DENIED);
    expect(await a.call('set b:secret 0 0 6\r\nstolen\r\n')).toBe(DENIED); // the data block is skipped
    expect(await a.call('append b:secret 0 0 1\r\nX\r\ncas b:secret 0 0 1 1\r\nX\r\n')).toBe(DENIED.repeat(2));
    expect(await a.call('delete b:secret\r\nincr b:secret 1\r\ntouch b:secret 10\r\n')).toBe(DENIED.repeat(3));
    // The meta commands too (b:secret in base64 is YjpzZWNyZXQ=).
    expect(await a.call('mg b:secret v\r\nms b:secret 1\r\nX\r\nmd b:secret\r\nma b:secret\r\nmg YjpzZWNyZXQ= b v\r\n')).toBe(DENIED.repeat(5));
    expect(await a.call('mg secret v\r\n')).toBe('VA 6\r\na-only\r\n');
    // flush_all of a bound connection empties its own tenant only.
    expect(await a.call('flush_all\r\nget secret\r\n')).toBe('OK\r\nEND\r\n');
    expect(await b.call('get secret b:secret\r\n')).toBe('VALUE secret 0 6\r\nb-only\r\nVALUE b:secret 0 7\r\nb-named\r\nEND\r\n');
    // After authentication "set" is a store like any other.
    expect(await b.call('set auth 0 0 6\r\na pw-a\r\nget auth\r\nget auth a:x\r\n')).toBe(`STORED\r\nVALUE auth 0 6\r\na pw-a\r\nEND\r\n${DENIED}`);
    a.close();
    b.close();
  });

  describe.skipIf(!haveMemcached() && !required)('side by side with memcached -Y', () => {
    let mc: { port: number; stop: () => Promise<void> };
    beforeAll(async () => {
      expect(haveMemcached(), 'memcached is missing: bash scripts/vm/deps.sh installs it').toBe(true);
      mc = await startMemcached(['-Y', authFile]);
    });
    afterAll(async () => {
      await mc?.stop();
    });

    const cases = [
      'get x\r\n',
      'version\r\n',
      'set x 0 0 6\r\na pw-b\r\n',
      'set x 0 0 1\r\na\r\n',
      'set x 0 0 0\r\n\r\n',
      'set x 0 0 7\r\na pw-a \r\n',
      'set x 0 0 5\r\n pw-a\r\n',
      'set x 0 0 7\r\na pw-aX\r\n',
      'set x 0 0 9\r\na  pw-a b\r\nget x\r\n',
      'set x 0 0 6\r\na pw-a\r\n',
      'set x 0 0 6 noreply\r\nb pw-b\r\nget x\r\n',
      'set x 0 0 6\r\nb pw-b\r\nset y 0 0 2\r\nhi\r\nget y\r\ndelete y\r\nget y\r\n',
      'set x 0 0 6\r\na pw-a\r\nincr n 1\r\nset n 0 0 1\r\n5\r\nincr n 2\r\ndecr n 9\r\ntouch n 0\r\n',
    ];
    for (const data of cases) {
      it(`the same replies: ${JSON.stringify(data)}`, async () => {
        const want = await exchange(mc.port, data);
        const got = await exchange(server.port, data);
        expect(got.reply).toBe(want.reply);
      });
    }
  });
});
