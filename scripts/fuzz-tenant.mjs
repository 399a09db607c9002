#!/usr/bin/env node
// A bounded-time random differential fuzzer for examples/tenant-cache's three
// parsers (text, meta, binary). NOT coverage-guided: a seeded generator makes
// command sequences from each protocol's grammar, mutates some of them
// (bytes flipped, numbers stretched, lines cut), and sends each sequence to
// this server and to Debian's memcached (the model) on fresh connections.
// It fails when this server dies, stops answering, or answers a well-formed
// sequence differently from memcached (CAS values masked). Malformed
// sequences are checked for survival only: error wording after garbage is
// not part of the contract. The committed corpus (test/fixtures/tenant-cache/
// fuzz/*.txt: one seed per line) is replayed first; a failure writes its
// seed there.
// With --threads N the server runs N worker threads (each sequence's
// connections land on whichever the kernel picks), so the shared index,
// allocator and lock must give memcached's answers too.
//   node scripts/fuzz-tenant.mjs [--seconds 60] [--seed N] [--threads N]
import { spawn } from 'node:child_process';
import { appendFileSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({ options: { seconds: { type: 'string', default: '60' }, seed: { type: 'string' }, threads: { type: 'string', default: '1' } } });
const root = fileURLToPath(new URL('..', import.meta.url));
const corpusDir = `${root}test/fixtures/tenant-cache/fuzz/`;

function prng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x100000000;
  };
}

async function freePort() {
  return new Promise((resolve) => {
    const p = net.createServer();
    p.listen(0, '127.0.0.1', () => {
      const { port } = p.address();
      p.close(() => resolve(port));
    });
  });
}

async function waitPort(port) {
  for (let i = 0; i < 400; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nothing listens on ${port}`);
}

/** Sends bytes, then a sentinel the protocol answers, and returns the replies before it (null: closed first). */
function exchange(port, data, binary, wait = 5000) {
  const sentinel = binary ? Buffer.from([0x80, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe, 0xed, 0xf0, 0x0d, 0, 0, 0, 0, 0, 0, 0, 0]) : Buffer.from('mn\r\n');
  const end = binary ? Buffer.from([0x81, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe, 0xed, 0xf0, 0x0d, 0, 0, 0, 0, 0, 0, 0, 0]) : Buffer.from('MN\r\n');
  return new Promise((resolve) => {
    const chunks = [];
    const s = net.connect(port, '127.0.0.1', () => s.write(Buffer.concat([data, sentinel])));
    const timer = setTimeout(() => (s.destroy(), resolve({ reply: Buffer.concat(chunks), closed: false, timeout: true })), wait);
    s.on('data', (d) => {
      chunks.push(d);
      const all = Buffer.concat(chunks);
      if (all.length >= end.length && all.subarray(all.length - end.length).equals(end)) {
        clearTimeout(timer);
        s.destroy();
        resolve({ reply: all.subarray(0, all.length - end.length), closed: false });
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ reply: Buffer.concat(chunks), closed: true });
    });
  });
}

// --- generators ---------------------------------------------------------
const KEYS = ['a', 'b', 'k1', 'n', 'x:y', 'long'.repeat(20)];
function gen(rand, kind) {
  const pick = (a) => a[Math.floor(rand() * a.length)];
  const int = (n) => Math.floor(rand() * n);
  const val = () => pick(['', '0', '1', '42', 'abc', '18446744073709551615', 'v'.repeat(int(300)), ' 7']);
  const parts = [];
  const count = 1 + int(8);
  for (let i = 0; i < count; i++) {
    const key = pick(KEYS);
    if (kind === 'text') {
      const v = val();
      parts.push(pick([
        () => `set ${key} ${int(5)} 0 ${v.length}\r\n${v}\r\n`,
        () => `add ${key} 0 0 ${v.length}\r\n${v}\r\n`,
        () => `replace ${key} 0 0 ${v.length}\r\n${v}\r\n`,
        () => `append ${key} 0 0 ${v.length}\r\n${v}\r\n`,
        () => `prepend ${key} 0 0 ${v.length}\r\n${v}\r\n`,
        () => `get ${key}${rand() < 0.5 ? ` ${pick(KEYS)}` : ''}\r\n`,
        () => `delete ${key}\r\n`,
        () => `incr ${key} ${int(100)}\r\n`,
        () => `decr ${key} ${int(100)}\r\n`,
        () => `touch ${key} ${int(100)}\r\n`,
        () => `set ${key} 0 0 ${v.length} noreply\r\n${v}\r\n`,
      ])());
    } else if (kind === 'meta') {
      const v = val();
      const fl = () => Array.from({ length: int(4) }, () => pick(['v', 'k', 'f', 's', 'q', 'O9', 'T0', 'c'])).filter((x, j, a) => a.indexOf(x) === j).join(' ');
      parts.push(pick([
        () => `ms ${key} ${v.length} ${pick(['', 'MS', 'ME', 'MA', 'MP', 'MR', 'F3', 'T100', 'q', 'k O1'])}\r\n${v}\r\n`,
        () => `mg ${key} ${fl()}\r\n`,
        () => `md ${key} ${pick(['', 'q', 'k', 'O4'])}\r\n`,
        () => `ma ${key} ${pick(['', 'v', 'N0 J5 v', 'MD D3 v', 'D9', 'q'])}\r\n`, // no mn: it is the sentinel
      ])());
    }
  }
  return Buffer.from(parts.join(''), 'latin1');
}

function genBinary(rand) {
  const pick = (a) => a[Math.floor(rand() * a.length)];
  const int = (n) => Math.floor(rand() * n);
  const out = [];
  for (let i = 0, n = 1 + int(8); i < n; i++) {
    const op = pick([0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x09, 0x0c, 0x0d, 0x0e, 0x0f, 0x11, 0x14, 0x15, 0x1c, 0x1d]);
    const key = Buffer.from(pick(KEYS));
    let extras = Buffer.alloc(0);
    let value = Buffer.alloc(0);
    if ([0x01, 0x02, 0x03, 0x11].includes(op)) {
      extras = Buffer.alloc(8);
      extras.writeUInt32BE(int(5));
      value = Buffer.from(pick(['1', '22', 'abc', 'z'.repeat(int(200))]));
    } else if ([0x0e, 0x0f].includes(op)) value = Buffer.from(pick(['1', 'q']));
    else if ([0x05, 0x06, 0x15].includes(op)) {
      extras = Buffer.alloc(20);
      extras.writeBigUInt64BE(BigInt(int(50)));
      extras.writeBigUInt64BE(BigInt(int(50)), 8);
      extras.writeUInt32BE(pick([0, 0xffffffff]), 16);
    } else if ([0x1c, 0x1d].includes(op)) extras = Buffer.alloc(4);
    const h = Buffer.alloc(24);
    h[0] = 0x80;
    h[1] = op;
    h.writeUInt16BE(key.length, 2);
    h[4] = extras.length;
    h.writeUInt32BE(extras.length + key.length + value.length, 8);
    h.writeUInt32BE(i, 12);
    out.push(h, extras, key, value);
  }
  return Buffer.concat(out);
}

function mutate(rand, data) {
  const b = Buffer.from(data);
  const n = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < n && b.length; i++) {
    const at = Math.floor(rand() * b.length);
    const r = rand();
    if (r < 0.5) b[at] = Math.floor(rand() * 256);
    else if (r < 0.75) b[at] = 0x20;
    else return b.subarray(0, at);
  }
  return b;
}

/** Binary responses with CAS masked; text with " c<digits>" and "gets" CAS masked. */
function normal(reply, binary) {
  if (!binary) return reply.toString('latin1').replace(/ c[0-9]+/g, ' c#');
  const b = Buffer.from(reply);
  for (let at = 0; at + 24 <= b.length; at += 24 + b.readUInt32BE(at + 8)) b.fill(0, at + 16, at + 24);
  return b.toString('hex');
}

// --- main ---------------------------------------------------------------
const port = await freePort();
const mport = await freePort();
const server = spawn(process.execPath, [`${root}examples/tenant-cache/cli.mjs`, '--port', String(port), '--tenant-bytes', '1m', '--max-item-size', '64k', '--threads', args.threads], { stdio: ['ignore', 'ignore', 'pipe'] });
let serverErr = '';
server.stderr.on('data', (d) => (serverErr += d));
const mc = spawn('memcached', [...(process.getuid() === 0 ? ['-u', 'root'] : []), '-l', '127.0.0.1', '-p', String(mport), '-U', '0', '-m', '64'], { stdio: 'ignore' });
let failed = false;
const stop = () => {
  server.kill('SIGTERM');
  mc.kill('SIGTERM');
};
try {
  await waitPort(port);
  await waitPort(mport);
  const corpus = readdirSync(corpusDir).filter((f) => f.endsWith('.txt')).flatMap((f) => readFileSync(corpusDir + f, 'utf8').split('\n').filter(Boolean).map(Number));
  const deadline = Date.now() + Number(args.seconds) * 1000;
  let seed = args.seed === undefined ? (Date.now() % 1e9) : Number(args.seed);
  let runs = 0;
  let divergences = 0;
  for (let i = 0; ; i++) {
    const s = i < corpus.length ? corpus[i] : seed++;
    if (i >= corpus.length && Date.now() > deadline) break;
    const rand = prng(s);
    const kind = ['text', 'meta', 'binary'][s % 3];
    const binary = kind === 'binary';
    let data = binary ? genBinary(rand) : gen(rand, kind);
    const malformed = rand() < 0.3;
    if (malformed) data = mutate(rand, data);
    // Flush both first, so every sequence starts from an empty cache.
    const flush = binary ? Buffer.from([0x80, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) : Buffer.from('flush_all\r\n');
    await exchange(port, flush, binary);
    await exchange(mport, flush, binary);
    // A malformed sequence may leave a data block open that eats the
    // sentinel: it gets a short wait, and only survival counts.
    const ours = await exchange(port, data, binary, malformed ? 300 : 5000);
    runs++;
    if (server.exitCode !== null || server.signalCode !== null || (ours.timeout && !malformed)) {
      console.error(`fuzz-tenant: seed ${s} (${kind}): the server ${ours.timeout ? 'stopped answering' : 'died'}\n${serverErr}`);
      appendFileSync(`${corpusDir}failures.txt`, `${s}\n`);
      failed = true;
      break;
    }
    // The server still serves a fresh connection after anything.
    const alive = await exchange(port, Buffer.from('version\r\n'), false);
    if (!alive.reply.toString().startsWith('VERSION')) {
      console.error(`fuzz-tenant: seed ${s}: no answer to version afterwards`);
      failed = true;
      break;
    }
    if (malformed) continue;
    const theirs = await exchange(mport, data, binary);
    if (normal(ours.reply, binary) !== normal(theirs.reply, binary) || ours.closed !== theirs.closed) {
      divergences++;
      console.error(`fuzz-tenant: seed ${s} (${kind}) diverges from memcached\n  sent:   ${JSON.stringify(data.toString('latin1'))}\n  ours:   ${JSON.stringify(normal(ours.reply, binary))}\n  theirs: ${JSON.stringify(normal(theirs.reply, binary))}`);
      appendFileSync(`${corpusDir}failures.txt`, `${s}\n`);
      failed = true;
      if (divergences >= 3) break;
    }
  }
  console.log(`fuzz-tenant: ${runs} sequences (${corpus.length} from the corpus), --threads ${args.threads}, ${failed ? 'FAILED' : 'no crash, no divergence'}`);
} finally {
  stop();
}
process.exit(failed ? 1 : 0);
