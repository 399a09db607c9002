// examples/tenant-cache keeps bounded memory whatever clients send: one line
// naming a 1 MiB item 200 times (`get k k k ...`, 200 MiB of replies), sent
// on many connections at once, some of which never read. The server's peak
// RSS (VmHWM of the server process, exact, not a timing) stays within the
// stated bound: its reply and request pools plus a fixed allowance per
// connection and for the JavaScript heap. A bystander asking for small values
// is served all along, the clients that read get every byte of their 200
// copies, and the ones that never read are disconnected by --write-timeout.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend, prng } from './helpers/vmpk.js';
import { Client, startServer, type CacheServer } from './helpers/tenant-cache.js';

const MiB = 1 << 20;
const KEY = 'big:k';
const VALUE_BYTES = MiB - KEY.length; // key + value: exactly --max-item-size
const COPIES = 200;
const READERS = 3;
const NON_READERS = 24;
const REPLY_MEMORY = 8 * MiB;
const REQUEST_MEMORY = 2 * MiB;
// What the server may add to its RSS over the run: both pools in full, 256
// KiB per connection (64 KiB of unsent small replies, a line and a read of
// input, one small value), and 40 MiB for the JavaScript heap and its
// garbage (measured: +2.6 to +20.7 MiB; unbounded, one such line took 400 MiB).
const CONNECTIONS = READERS + NON_READERS + 2;
const BOUND = REPLY_MEMORY + REQUEST_MEMORY + CONNECTIONS * 256 * 1024 + 40 * MiB;

function vm(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

/** Sends the line and checks the reply stream byte for byte as it comes, keeping none of it. */
function reader(port: number, line: string, unit: Buffer, copies: number, progress: (got: number) => void = () => {}): Promise<number> {
  const total = unit.length * copies + 5;
  return new Promise((resolve, reject) => {
    let got = 0;
    const s = net.connect(port, '127.0.0.1', () => s.write(line));
    s.on('data', (d: Buffer) => {
      for (let i = 0; i < d.length; ) {
        if (got >= unit.length * copies) {
          const want = Buffer.from('END\r\n').subarray(got - unit.length * copies);
          const n = Math.min(want.length, d.length - i);
          if (!d.subarray(i, i + n).equals(want.subarray(0, n))) return reject(new Error(`bad END at ${got}`));
          i += n;
          got += n;
          continue;
        }
        const at = got % unit.length;
        const n = Math.min(unit.length - at, d.length - i);
        if (!d.subarray(i, i + n).equals(unit.subarray(at, at + n))) return reject(new Error(`reply differs at byte ${got}`));
        i += n;
        got += n;
      }
      progress(got);
      if (got === total) {
        s.destroy();
        resolve(got);
      }
    });
    s.on('error', reject);
    s.on('close', () => (got === total ? resolve(got) : reject(new Error(`closed after ${got} of ${total} bytes`))));
  });
}

describe(`tenant-cache memory bound (${backend} backend)`, () => {
  let server: CacheServer;

  beforeAll(async () => {
    server = await startServer([
      '--tenant-bytes', '2m', '--max-item-size', '1m',
      '--reply-memory', String(REPLY_MEMORY), '--request-memory', String(REQUEST_MEMORY), '--write-timeout', '3',
    ]);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it(`${COPIES} copies of a 1 MiB item on ${READERS + NON_READERS} connections at once: peak RSS grows by at most the bound`, async () => {
    const rand = prng(14);
    const value = Buffer.from(Array.from({ length: VALUE_BYTES }, () => 0x21 + Math.floor(rand() * 90)));
    const unit = Buffer.concat([Buffer.from(`VALUE ${KEY} 0 ${VALUE_BYTES}\r\n`), value, Buffer.from('\r\n')]);
    const line = `get ${Array(COPIES).fill(KEY).join(' ')}\r\n`;
    expect(line.length).toBeLessThan(2048);

    const setter = await Client.connect(server.port);
    expect(await setter.call(Buffer.concat([Buffer.from(`set ${KEY} 0 0 ${VALUE_BYTES}\r\n`), value, Buffer.from('\r\n')]))).toBe('STORED\r\n');
    // Warm up every path once (a pieced store, a full reply of 200 copies), then take the baseline.
    expect(await reader(server.port, line, unit, COPIES)).toBe(unit.length * COPIES + 5);
    const pid = server.child.pid!;
    const base = vm(pid, 'VmHWM');

    // Clients that send the line and never read a byte.
    const stuck: net.Socket[] = [];
    for (let i = 0; i < NON_READERS; i++) {
      const s = net.connect(server.port, '127.0.0.1');
      s.on('error', () => {});
      s.pause();
      s.write(line);
      stuck.push(s);
    }
    const prog: number[] = [];
    const readers = Array.from({ length: READERS }, (_, i) => reader(server.port, line, unit, COPIES, (g) => (prog[i] = g)));

    // The bystander, on its own tenant, is served while all of that runs.
    const bystander = await Client.connect(server.port);
    let rounds = 0;
    let done = false;
    const all = Promise.all(readers).finally(() => (done = true));
    // A watchdog, not a speed check: a stuck run fails with what it saw
    // instead of running into the test's timeout.
    const watchdog = Date.now() + 60_000;
    const state = async () => (await bystander.call('stats\r\n')).match(/STAT (reply_buffer_bytes|reply_buffer_waiters|write_timeouts|curr_connections) \d+/g)?.join(', ');
    while (!done || rounds < 20) {
      if (Date.now() > watchdog) expect.fail(`readers stuck at ${prog.join(', ')} bytes; ${await state()}`);
      rounds++;
      const v = `round-${rounds}`;
      expect(await bystander.call(`set by:r 0 0 ${v.length}\r\n${v}\r\nget by:r\r\n`)).toBe(`STORED\r\nVALUE by:r 0 ${v.length}\r\n${v}\r\nEND\r\n`);
      await new Promise((resolve) => setTimeout(resolve, 2)); // leave the CPU to the readers
    }
    expect(await all).toEqual(Array(READERS).fill(unit.length * COPIES + 5));
    // --write-timeout 3 ends each client that never reads (they held the reply pool).
    let stats = '';
    const timeouts = () => Number(/STAT write_timeouts (\d+)\r\n/.exec(stats)![1]);
    for (;;) {
      stats = await bystander.call('stats\r\n');
      if (timeouts() >= NON_READERS) break;
      if (Date.now() > watchdog) expect.fail(`only ${timeouts()} write timeouts; ${await state()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(timeouts()).toBe(NON_READERS); // and no reader among them
    for (const s of stuck) s.destroy();
    const peak = vm(pid, 'VmHWM');

    expect(stats).toMatch(`STAT reply_buffer_limit ${REPLY_MEMORY}\r\n`);
    process.stderr.write(`tenant-cache memory: VmHWM ${(base / MiB).toFixed(1)} MiB before, ${(peak / MiB).toFixed(1)} MiB peak, +${((peak - base) / MiB).toFixed(1)} MiB (bound ${(BOUND / MiB).toFixed(1)} MiB), ${rounds} bystander rounds\n`);
    expect(peak - base).toBeLessThanOrEqual(BOUND);
    bystander.close();
    setter.close();
  }, 120_000);
});
