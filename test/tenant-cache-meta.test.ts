// examples/tenant-cache's meta protocol (mg, ms, md, ma, mn, me) side by side
// with Debian's memcached 1.6.18 (required under CI and in the guest): the
// same lines give the same replies, CAS values compared only as present.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend } from './helpers/vmpk.js';
import { Client, haveMemcached, startMemcached, startServer, type CacheServer } from './helpers/tenant-cache.js';

const required = process.env.CI === 'true' || process.env.VMPK_VM === '1';

const CASES: Array<[string, string]> = [
  ['mn', 'mn\r\n'],
  ['mg of a missing key, quiet and not', 'mg m v\r\nmg m v q\r\nmg m k O7\r\nmn\r\n'],
  ['ms then mg with v, k, f, s, O, in the order asked', 'ms a 5 F9\r\nhello\r\nmg a v\r\nmg a k f s O42 v\r\nmg a s f\r\nmg a\r\n'],
  ['ms modes: add, replace, append, prepend, set', 'ms b 1 ME\r\n1\r\nms b 1 ME\r\n2\r\nms nb 1 MR\r\nx\r\nms b 1 MR\r\n3\r\nms b 2 MA\r\n-a\r\nms b 2 MP\r\np-\r\nmg b v\r\nms nb 1 MA\r\nx\r\n'],
  ['ms quiet, ms with k and O', 'ms q 1 q\r\n1\r\nms q2 1 k O5\r\n2\r\nmg q v\r\n'],
  ['ms with a wrong CAS, on a missing key', 'ms c 1\r\n1\r\nms c 1 C999999\r\n2\r\nms nc 1 C1\r\n2\r\nmg c v\r\n'],
  ['ms with T and mg t', 'ms t 1 T100\r\n1\r\nmg t t v\r\nms t0 1\r\n1\r\nmg t0 t\r\n'],
  ['mg T touches', 'ms tt 1\r\n1\r\nmg tt T50 t\r\n'],
  ['md, md missing, md quiet', 'ms d 1\r\n1\r\nmd d\r\nmd d\r\nms d 1\r\n1\r\nmd d q\r\nmd d q\r\nmg d v\r\n'],
  ['ma: missing, autovivify, incr, decr, value', 'ma n\r\nma n N0 J10\r\nma n\r\nma n v\r\nma n MD D5 v\r\nma n MD D100 v\r\nma n D7 v O3 k\r\nma n q\r\nmg n v\r\n'],
  ['ma on a non-number', 'ms s 3\r\nabc\r\nma s\r\n'],
  ['base64 keys', 'ms Zm9v 3 b\r\nbar\r\nmg Zm9v b v k\r\nget foo\r\nmd Zm9v b\r\nmg Zm9v b v\r\n'],
  ['bad lines', 'mg\r\nms x\r\nms x abc\r\nmg x 1\r\n'],
];

describe.skipIf(!haveMemcached() && !required)(`tenant-cache meta protocol side by side with memcached (${backend} backend)`, () => {
  let server: CacheServer;
  let mc: { port: number; stop: () => Promise<void> };
  let ours: Client;
  let theirs: Client;
  beforeAll(async () => {
    expect(haveMemcached(), 'memcached is missing: bash scripts/vm/deps.sh installs it').toBe(true);
    server = await startServer(['--tenant-bytes', '1m', '--max-item-size', '64k']);
    mc = await startMemcached(['-m', '64']);
    ours = await Client.connect(server.port);
    theirs = await Client.connect(mc.port);
  });
  afterAll(async () => {
    ours?.close();
    theirs?.close();
    await server?.stop();
    await mc?.stop();
  });

  /** Replies with CAS values masked; memcached answers "version" with its own version. */
  const norm = (s: string) => s.replace(/ c[0-9]+/g, ' c#');
  async function call(c: Client, data: string): Promise<string> {
    c.socket.write(data + 'mn\r\n');
    await c.until((b) => b.toString('latin1').endsWith('MN\r\n') && (data.match(/mn\r\n/g)?.length ?? 0) + 1 === (b.toString('latin1').match(/MN\r\n/g)?.length ?? 0));
    return norm(c.take());
  }

  for (const [name, data] of CASES) {
    it(name, async () => {
      expect(await call(ours, data)).toBe(await call(theirs, data));
    });
  }
});
