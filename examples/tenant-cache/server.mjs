// The memcached text protocol over TCP: framing, parsing and replies. The
// semantics of each command are in store.mjs; this file only reads lines and
// data blocks, checks arguments and writes the protocol's replies.
import { timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { Cache, CacheError, hashKey, WAIT } from './store.mjs';
import { Pool } from './pool.mjs';
import * as meta from './meta.mjs';
import { bodyLength, handle as handleBinary, REQ, response as binaryResponse } from './binary.mjs';
import { counterOfThread, counterRow, counterTotals, held, holdHere, release, resetCounters } from './shared.mjs';

export const VERSION = '1.6.0-vmpk-cache';
const MAX_KEY = 250;
// A command line may be this long (a multi-get of 256 full-length keys);
// longer without a newline is an error and the connection closes.
const MAX_LINE = 64 * 1024;
const MAX_TOKENS = 24; // for every command but get/gets
// A connection with more unsent reply bytes than this stops being served
// (and read) until its socket drains.
const CONN_OUT = 64 * 1024;
const CHUNK = 64 * 1024; // the pools' chunk size
// Values up to this size are copied into a buffer of their own rather than
// pool chunks: with at most CONN_OUT unsent per connection they are bounded
// too, and a client asking for small values is served even while clients
// that do not read hold the whole reply pool.
const SMALL = 4096;
const MAX_AUTH = 1024; // the longest "user password" block

const BAD_FORMAT = 'CLIENT_ERROR bad command line format';
const DENIED = 'CLIENT_ERROR access denied: the key names another tenant';
const STORAGE = new Set(['set', 'add', 'replace', 'append', 'prepend', 'cas']);

/** Copies src[s, s + n) into the chunks at byte offset `at`. */
function copyIn(chunks, at, src, s, n) {
  const size = chunks[0].length;
  while (n > 0) {
    const c = chunks[Math.floor(at / size)];
    const o = at % size;
    const m = Math.min(n, size - o);
    src.copy(c, o, s, s + m);
    at += m;
    s += m;
    n -= m;
  }
}

/** A decimal integer token, or NaN. */
function int(buf, s, e, signed) {
  let i = s;
  let neg = false;
  if (signed && buf[i] === 0x2d) {
    neg = true;
    i++;
  }
  if (i === e || e - i > 19) return NaN;
  let n = 0;
  for (; i < e; i++) {
    const d = buf[i] - 0x30;
    if (d < 0 || d > 9) return NaN;
    n = n * 10 + d;
  }
  return neg ? -n : n;
}

/** A decimal unsigned 64-bit token as a bigint, or null. */
function u64(buf, s, e) {
  if (e - s < 1 || e - s > 20) return null;
  for (let i = s; i < e; i++) if (buf[i] < 0x30 || buf[i] > 0x39) return null;
  const n = BigInt(buf.toString('latin1', s, e));
  return n < 1n << 64n ? n : null;
}

class Connection {
  /** @param {Server} server @param {net.Socket} socket */
  constructor(server, socket) {
    this.server = server;
    this.cache = server.cache;
    this.socket = socket;
    this.rest = null; // unparsed bytes
    this.pending = null; // a storage command waiting for its data block
    this.job = null; // a multi-get that stopped for backpressure: { buf, keys, k, withCas }
    this.waiting = null; // null, 'drain' (the socket's unsent bytes) or 'pool' (a chunk pool)
    this.text = ''; // reply lines not yet handed to the socket
    this.held = new Set(); // reply chunks the socket has not written yet
    this.closing = false;
    this.binary = undefined; // decided by the first byte
    this.stall = null; // the write-timeout timer while waiting for 'drain'
    this.readStall = null; // the read-timeout timer while holding request chunks
    this.lastRead = 0; // when the last bytes arrived (ms, monotonic)
    // With --auth-file, null until the client authenticates; then the tenant
    // every key of this connection lives in. Without it, keys name tenants.
    this.scope = server.auth === null ? null : undefined;
    this.tokens = new Int32Array(2 * MAX_TOKENS);
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('drain', () => {
      if (this.waiting === 'drain') this.wake();
    });
    socket.on('error', () => socket.destroy()); // a reset client: nothing to answer
    socket.on('close', () => this.closed());
  }

  closed() {
    this.closing = true;
    if (this.stall !== null) clearTimeout(this.stall);
    if (this.readStall !== null) clearTimeout(this.readStall);
    this.server.connections.delete(this);
    this.server.countConnections();
    this.server.replies.forget(this);
    this.server.requests.forget(this);
    // The handle is closed: no write still reads these chunks.
    for (const rec of this.held) this.server.replies.give(rec);
    this.held.clear();
    if (this.pending?.chunks && !this.pending.own) this.server.requests.give(this.pending.chunks);
    this.pending = null;
    this.job = null;
  }

  reply(line) {
    this.text += line + '\r\n';
  }

  /** Unsent reply bytes of this connection. */
  outstanding() {
    return this.socket.writableLength + this.text.length;
  }

  flush() {
    if (this.text) this.socket.write(this.text, 'latin1');
    this.text = '';
  }

  /** Test mode only (faults.mjs): a reply buffer outside the pool. */
  replyBuffer(buf) {
    this.flush();
    this.socket.write(buf);
  }

  /** Chunks for a value of `vlen` bytes (own buffer when small), or null: wait for the pool. */
  takeReply(vlen) {
    return vlen <= SMALL ? [Buffer.allocUnsafe(vlen)] : this.server.replies.take(this, vlen);
  }

  /** A binary hit: its header, then the value's chunks. */
  replyValueBinary(header, hit) {
    this.replyValue(header, hit, '');
  }

  /** A hit: its line, the value's chunks (back to the pool once written), then `trailer`. */
  replyValue(line, hit, trailer = '\r\n') {
    if (typeof line === 'string') this.text += line;
    this.flush();
    if (typeof line !== 'string') this.socket.write(line);
    let left = hit.vlen;
    const chunks = hit.chunks;
    for (let i = 0; i < chunks.length; i++) {
      const n = Math.min(left, chunks[i].length);
      const piece = n === chunks[i].length ? chunks[i] : chunks[i].subarray(0, n);
      left -= n;
      if (i < chunks.length - 1 || hit.vlen <= SMALL) this.socket.write(piece);
      else {
        this.held.add(chunks);
        this.socket.write(piece, () => {
          if (this.held.delete(chunks)) this.server.replies.give(chunks);
          if (this.stall === null) return;
          if (this.holdsUnsent()) this.armStall(); // progress: the client reads; the clock starts again
          else {
            clearTimeout(this.stall);
            this.stall = null;
          }
        });
      }
    }
    this.text = trailer;
  }

  close() {
    this.closing = true;
    this.flush();
    this.socket.end();
  }

  onData(chunk) {
    if (this.closing) return;
    this.lastRead = performance.now();
    this.rest = this.rest === null ? chunk : Buffer.concat([this.rest, chunk]);
    if (this.waiting === null) this.pump();
    this.armRead();
  }

  /** Holding request-pool chunks for a value still arriving. */
  holdsRequest() {
    return !!this.pending?.chunks && !this.pending.own;
  }

  /**
   * A client that holds request chunks and sends nothing for --read-timeout
   * seconds is disconnected, which returns them: otherwise connections that
   * declare large values and never send their last byte would hold a
   * thread's whole request pool, and every other tenant's large values would
   * wait behind them for ever. Any byte that arrives restarts the clock.
   */
  armRead() {
    if (this.server.readTimeout === 0 || this.closing || this.readStall !== null || !this.holdsRequest()) return;
    const check = () => {
      this.readStall = null;
      if (this.closing || !this.holdsRequest()) return;
      const left = this.lastRead + this.server.readTimeout * 1000 - performance.now();
      if (left > 0) {
        this.readStall = setTimeout(check, left);
        this.readStall.unref();
        return;
      }
      this.server.counters.readTimeouts++;
      this.socket.destroy();
    };
    this.readStall = setTimeout(check, Math.max(0, this.lastRead + this.server.readTimeout * 1000 - performance.now()));
    this.readStall.unref();
  }

  /** Waiting while holding unsent replies (the socket's, or pool chunks). */
  holdsUnsent() {
    return this.waiting === 'drain' || (this.waiting === 'pool' && this.held.size > 0);
  }

  armStall() {
    if (this.server.writeTimeout === 0) return;
    if (this.stall !== null) clearTimeout(this.stall);
    this.stall = setTimeout(() => {
      this.stall = null;
      if (!this.holdsUnsent()) return; // it holds nothing now: waiting in line is no fault
      this.server.counters.writeTimeouts++;
      this.socket.destroy();
    }, this.server.writeTimeout * 1000);
    this.stall.unref();
  }

  wake() {
    if (this.closing) return;
    if (this.stall !== null) clearTimeout(this.stall);
    this.stall = null;
    this.waiting = null;
    this.pump();
    this.armRead();
  }

  /**
   * Parses and runs what has arrived until it is used up or the connection
   * must wait: for the socket to drain (over CONN_OUT unsent) or for pool
   * chunks. While it waits it reads nothing more.
   */
  pump() {
    if (this.job !== null) this.runGet();
    let buf = this.rest;
    this.rest = null;
    let pos = 0;
    if (buf !== null && this.binary === undefined && buf.length > 0) this.binary = buf[0] === REQ; // as memcached: the first byte decides
    while (buf !== null && pos < buf.length && !this.closing && this.waiting === null) {
      if (this.outstanding() > CONN_OUT) {
        this.waiting = 'drain';
        break;
      }
      if (this.pending !== null) {
        pos = this.fill(buf, pos);
        continue;
      }
      if (this.binary) {
        const r = this.binaryRequest(buf, pos);
        if (r < 0) break;
        pos = r;
        continue;
      }
      const nl = buf.indexOf(0x0a, pos);
      if (nl < 0) {
        if (buf.length - pos > MAX_LINE) {
          this.reply('CLIENT_ERROR line too long');
          this.close();
          return;
        }
        break;
      }
      if (nl - pos > MAX_LINE) {
        this.reply('CLIENT_ERROR line too long');
        this.close();
        return;
      }
      const end = nl > pos && buf[nl - 1] === 0x0d ? nl - 1 : nl;
      pos = this.line(buf, pos, end, nl + 1);
    }
    if (buf !== null && pos < buf.length && !this.closing) this.rest = pos === 0 ? buf : buf.subarray(pos);
    this.flush();
    if (this.closing) return;
    if (this.waiting === 'drain' && !this.socket.writableNeedDrain) {
      // Everything went out at once: no 'drain' will come, so go on next turn.
      setImmediate(() => this.wake());
    }
    // A client that stops reading holds reply chunks: waiting for its socket
    // to drain, or for the pool while some of its chunks are still unsent.
    // After --write-timeout seconds without a write completing it is
    // disconnected, which returns them.
    if (this.stall === null && this.holdsUnsent()) this.armStall();
    if (this.waiting !== null) this.socket.pause();
    else this.socket.resume();
  }

  /**
   * One binary request at buf[pos]: returns the position after it, or -1
   * when it must wait (for more bytes, or for reply chunks: this.waiting).
   */
  binaryRequest(buf, pos) {
    if (buf.length - pos < 24) return -1;
    const blen = bodyLength(buf, pos);
    if (blen < 0) {
      this.close(); // not a request header: the stream cannot be followed (memcached closes too)
      return -1;
    }
    if (buf.length - pos >= 24 + blen) {
      const vs = pos + 24 + buf[pos + 4] + buf.readUInt16BE(pos + 2);
      const pieces = vs < pos + 24 + blen ? [[buf, vs, pos + 24 + blen - vs]] : [];
      if (!handleBinary(this, buf, pos, pieces)) {
        this.waiting = 'pool';
        return -1;
      }
      return pos + 24 + blen;
    }
    if (blen <= MAX_LINE) return -1; // the rest comes in a later read
    // A large body (a store of a large value) is gathered in request chunks;
    // any other request this long cannot be one the protocol allows.
    const op = buf[pos + 1];
    const store = [0x01, 0x02, 0x03, 0x0e, 0x0f, 0x11, 0x12, 0x13, 0x19, 0x1a].includes(op);
    if (!store || buf.readUInt16BE(pos + 2) > 250) {
      this.close();
      return -1;
    }
    if (blen > this.cache.maxItemSize + 300) {
      // As memcached: "Too large", and the body is skipped.
      this.socket.write(binaryResponse(op, 0x03, buf.readUInt32BE(pos + 12), 0, null, null, Buffer.from('Too large.')));
      this.pending = { binary: true, need: 24 + blen, got: 0, chunks: null };
      return pos;
    }
    if (this.scope === undefined) {
      // Before authentication only SASL (a short body) is taken: a large
      // store would hold request-pool chunks for a client that may never
      // authenticate. Refused as the request would be, then closed.
      this.socket.write(binaryResponse(op, 0x20, buf.readUInt32BE(pos + 12), 0, null, null, null));
      this.close();
      return -1;
    }
    const chunks = this.server.requests.take(this, 24 + blen);
    if (chunks === null) {
      this.waiting = 'pool';
      return -1;
    }
    this.pending = { binary: true, need: 24 + blen, got: 0, chunks };
    return pos;
  }

  /** Takes bytes of a pending data block; runs the command when it is complete. */
  fill(buf, pos) {
    const p = this.pending;
    const n = Math.min(buf.length - pos, p.need - p.got);
    if (p.chunks !== null) copyIn(p.chunks, p.got, buf, pos, n);
    p.got += n;
    if (p.got === p.need && p.binary && p.chunks === null) this.pending = null; // skipped
    else if (p.got === p.need && p.binary) {
      // Header, extras and key lie in the first chunk; the value follows across chunks.
      this.pending = null;
      const size = this.server.requests.chunkSize;
      const c0 = p.chunks[0];
      let at = 24 + c0[4] + c0.readUInt16BE(2);
      const pieces = [];
      while (at < p.need) {
        const i = Math.floor(at / size);
        const m = Math.min(p.need - at, size - (at % size));
        pieces.push([p.chunks[i], at % size, m]);
        at += m;
      }
      handleBinary(this, c0, 0, pieces); // a store: never waits for reply chunks
      this.server.requests.give(p.chunks);
    } else if (p.got === p.need) {
      this.pending = null;
      if (p.chunks !== null) {
        const size = this.server.requests.chunkSize;
        const at = (i) => p.chunks[Math.floor(i / size)][i % size];
        const pieces = [];
        for (let left = p.need - 2, i = 0; left > 0; i++) {
          const m = Math.min(left, size);
          pieces.push([p.chunks[i], 0, m]);
          left -= m;
        }
        this.complete(p, pieces, at(p.need - 2) === 0x0d && at(p.need - 1) === 0x0a);
        if (!p.own) this.server.requests.give(p.chunks);
      }
    }
    return pos + n;
  }

  /** Splits [s, e) on spaces into this.tokens; returns the count, or -1 if there are too many. */
  split(buf, s, e, max) {
    let n = 0;
    let i = s;
    const t = this.tokens;
    while (i < e) {
      while (i < e && buf[i] === 0x20) i++;
      if (i === e) break;
      const start = i;
      while (i < e && buf[i] !== 0x20) i++;
      if (n === max) return -1;
      t[2 * n] = start;
      t[2 * n + 1] = i;
      n++;
    }
    return n;
  }

  /** Handles one command line [s, e); `next` is where the line's bytes end. Returns the new position. */
  line(buf, s, e, next) {
    const n = this.split(buf, s, e, MAX_TOKENS);
    if (n === 0) {
      this.reply('ERROR');
      return next;
    }
    const t = this.tokens;
    const cmd = t[1] - t[0] <= 16 ? buf.toString('latin1', t[0], t[1]) : '';
    if (this.scope === undefined && cmd !== 'set') {
      // --auth-file: before authentication only "set" (carrying "user
      // password") is taken; memcached answers nothing after this error.
      this.reply('CLIENT_ERROR unauthenticated');
      this.close();
      return next;
    }
    try {
      if (cmd === 'get' || cmd === 'gets') {
        this.retrieve(buf, s, e, cmd === 'gets');
        return next;
      }
      if (n < 0) {
        this.reply('ERROR');
        return next;
      }
      if (STORAGE.has(cmd) || cmd === 'ms') return this.storage(cmd, buf, n, s, next);
      if (cmd === 'mg' || cmd === 'md' || cmd === 'ma' || cmd === 'mn' || cmd === 'me') {
        if (meta.command(this, cmd, buf, n, t)) return next;
        this.waiting = 'pool'; // for reply chunks: the line runs again then
        return s;
      }
      this.command(cmd, buf, n);
    } catch (err) {
      this.reply(err instanceof CacheError ? err.message : `SERVER_ERROR ${String(err.message ?? err).split('\n')[0]}`);
    }
    return next;
  }

  /**
   * Whether this connection may name the key [ks, ke): with --auth-file, a
   * key whose prefix names another tenant is refused (a key without a prefix
   * is the bound tenant's own).
   */
  allowed(buf, ks, ke) {
    if (this.scope === null) return true;
    const sep = this.server.separator;
    let i = ks;
    while (i < ke && buf[i] !== sep) i++;
    if (i === ke) return true;
    return i - ks === this.scopeBytes.length && this.scopeBytes.equals(buf.subarray(ks, i));
  }

  retrieve(buf, s, e, withCas) {
    // get takes any number of keys: split it without the token limit.
    const keys = [];
    let i = s;
    while (i < e && buf[i] !== 0x20) i++; // the command
    while (i < e) {
      while (i < e && buf[i] === 0x20) i++;
      if (i === e) break;
      const start = i;
      while (i < e && buf[i] !== 0x20) i++;
      if (i - start > MAX_KEY) {
        this.reply(BAD_FORMAT);
        return;
      }
      if (!this.allowed(buf, start, i)) {
        this.reply(DENIED);
        return;
      }
      keys.push(start, i);
    }
    if (keys.length === 0) {
      this.reply('ERROR');
      return;
    }
    // The line's keys are answered one by one, each value written before
    // the next is read, pausing whenever the client is not reading fast
    // enough: a line naming a large item many times never builds its reply.
    this.job = { buf, keys, k: 0, withCas };
    this.runGet();
  }

  /** Goes on with the multi-get in this.job; sets this.waiting when it must stop. */
  runGet() {
    const job = this.job;
    const stats = this.server.counters;
    const take = (vlen) => this.takeReply(vlen);
    for (; job.k < job.keys.length; job.k += 2) {
      if (this.outstanding() > CONN_OUT) {
        this.waiting = 'drain';
        return;
      }
      const ks = job.keys[job.k];
      const ke = job.keys[job.k + 1];
      let hit;
      try {
        hit = this.cache.get(job.buf, ks, ke, take, this.scope);
      } catch (err) {
        this.job = null;
        throw err;
      }
      if (hit === WAIT) {
        this.waiting = 'pool';
        return;
      }
      stats.cmdGet++;
      if (hit === null) {
        stats.getMisses++;
        continue;
      }
      stats.getHits++;
      const key = job.buf.toString('latin1', ks, ke);
      this.replyValue(`VALUE ${key} ${hit.flags} ${hit.vlen}${job.withCas ? ` ${hit.cas}` : ''}\r\n`, hit);
    }
    this.job = null;
    this.reply('END');
  }

  storage(cmd, buf, n, s, next) {
    const t = this.tokens;
    if (cmd === 'ms' && this.scope !== undefined) return this.metaStore(buf, n, s, next);
    const isCas = cmd === 'cas';
    const base = isCas ? 6 : 5;
    if (n !== base && n !== base + 1) {
      this.reply(n === 1 ? 'ERROR' : BAD_FORMAT);
      return next;
    }
    const noreply = n === base + 1 && buf.toString('latin1', t[2 * base], t[2 * base + 1]) === 'noreply';
    const bytes = int(buf, t[8], t[9], false);
    if (!Number.isSafeInteger(bytes) || bytes > 0x7fffffff) {
      this.reply(BAD_FORMAT); // no length to skip: what follows is read as commands
      return next;
    }
    const ks = t[2];
    const ke = t[3];
    const flags = int(buf, t[4], t[5], false);
    const exptime = int(buf, t[6], t[7], true);
    const casUnique = isCas ? u64(buf, t[10], t[11]) : 0n;
    const auth = this.scope === undefined; // the data block is "user password"
    let error = null;
    if (ke - ks > MAX_KEY || !(flags <= 0xffffffff) || Number.isNaN(exptime) || casUnique === null || (n === base + 1 && !noreply)) error = BAD_FORMAT;
    else if (auth ? bytes > MAX_AUTH : ke - ks + bytes > this.cache.maxItemSize) error = 'SERVER_ERROR object too large for cache';
    else if (!auth && !this.allowed(buf, ks, ke)) error = DENIED;
    const p = {
      cmd, flags, exptime, noreply, need: bytes + 2, got: 0, chunks: null, casUnique: isCas ? Number(casUnique) : 0,
      key: null, auth,
    };
    if (error !== null) {
      // The data block follows anyway: skip it, so the client's next command is read as one.
      this.reply(error);
      this.pending = p;
      return next;
    }
    if (buf.length - next >= bytes + 2) {
      // The whole block is here: store straight from the buffer.
      this.server.counters.cmdSet++;
      p.key = [buf, ks, ke];
      this.complete(p, [[buf, next, bytes]], buf[next + bytes] === 0x0d && buf[next + bytes + 1] === 0x0a);
      return next + bytes + 2;
    }
    // The block comes in pieces: gather it in request-pool chunks, or wait
    // for them and read this line again then. Before authentication the
    // block (at most MAX_AUTH bytes) gets a buffer of its own: unauthenticated
    // clients never hold the pool's chunks, which tenants' values wait for.
    p.own = auth;
    const chunks = auth ? [Buffer.alloc(bytes + 2)] : this.server.requests.take(this, bytes + 2);
    if (chunks === null) {
      this.waiting = 'pool';
      return s;
    }
    this.server.counters.cmdSet++;
    p.key = [Buffer.from(buf.subarray(ks, ke)), 0, ke - ks];
    p.chunks = chunks;
    this.pending = p;
    return next;
  }

  /** ms <key> <datalen> <flags>*: as storage(), with the meta protocol's flags and replies. */
  metaStore(buf, n, s, next) {
    const m = meta.parseStore(buf, n, this.tokens);
    let error = m.error ?? null;
    if (error === null && m.key[2] - m.key[1] + m.bytes > this.cache.maxItemSize) error = 'SERVER_ERROR object too large for cache';
    if (error === null && !this.allowed(...m.key)) error = DENIED;
    if (error !== null) {
      this.reply(error);
      if (m.bytes >= 0) this.pending = { need: m.bytes + 2, got: 0, chunks: null };
      return next;
    }
    const p = { need: m.bytes + 2, got: 0, chunks: null, key: m.key, meta: m };
    if (buf.length - next >= m.bytes + 2) {
      this.server.counters.cmdSet++;
      this.complete(p, [[buf, next, m.bytes]], buf[next + m.bytes] === 0x0d && buf[next + m.bytes + 1] === 0x0a);
      return next + m.bytes + 2;
    }
    const chunks = this.server.requests.take(this, m.bytes + 2);
    if (chunks === null) {
      this.waiting = 'pool';
      return s;
    }
    this.server.counters.cmdSet++;
    const [kb, ks, ke] = m.key;
    p.key = [Buffer.from(kb.subarray(ks, ke)), 0, ke - ks];
    m.buf = Buffer.from(m.buf.subarray(0, m.t[m.t.length - 1])); // the line, for the reply's flags
    p.chunks = chunks;
    this.pending = p;
    return next;
  }

  /** Runs a storage command whose data block (value and CR LF) is complete. */
  complete(p, pieces, crlf) {
    if (!crlf) {
      this.reply('CLIENT_ERROR bad data chunk');
      return;
    }
    if (p.meta) {
      const m = p.meta;
      const [kb, ks, ke] = p.key;
      try {
        meta.storeReply(this, m, this.cache.store(m.cmd, kb, ks, ke, m.flags, m.ttl, pieces, m.cas, this.scope));
      } catch (err) {
        this.reply(err instanceof CacheError ? err.message : `SERVER_ERROR ${err.message}`);
      }
      return;
    }
    if (p.auth) {
      this.authenticate(pieces);
      return;
    }
    const [kb, ks, ke] = p.key;
    let r;
    try {
      r = this.cache.store(p.cmd, kb, ks, ke, p.flags, p.exptime, pieces, p.casUnique, this.scope);
    } catch (err) {
      this.reply(err instanceof CacheError ? err.message : `SERVER_ERROR ${err.message}`);
      return;
    }
    if (!p.noreply) this.reply(r);
  }

  /** Text-protocol authentication (memcached -Y): the value is "user password". */
  authenticate(pieces) {
    const text = Buffer.concat(pieces.map(([b, s, n]) => b.subarray(s, s + n))).toString('latin1');
    // As memcached: the first two space-separated words; more are ignored.
    const words = text.split(' ').filter((w) => w !== '');
    if (words.length < 2) {
      this.reply('CLIENT_ERROR bad authentication token format');
      return;
    }
    const user = this.server.auth.check(words[0], words[1]);
    if (user === null) {
      this.reply('CLIENT_ERROR authentication failure');
      return;
    }
    this.bind(user);
    this.reply('STORED');
  }

  bind(user) {
    this.scope = user;
    this.scopeBytes = Buffer.from(user, 'latin1');
  }

  /** The commands that are one line. */
  command(cmd, buf, n) {
    const t = this.tokens;
    const tok = (i) => buf.toString('latin1', t[2 * i], t[2 * i + 1]);
    const noreplyAt = (i) => n === i + 1 && tok(i) === 'noreply';
    const keyOk = (i) => t[2 * i + 1] - t[2 * i] <= MAX_KEY;
    const out = (line, noreply) => {
      if (!noreply) this.reply(line);
    };
    const counters = this.server.counters;
    switch (cmd) {
      case 'delete': {
        // "delete <key> 0" is an old form memcached still accepts.
        const legacy = n >= 3 && tok(2) === '0';
        const noreply = noreplyAt(legacy ? 3 : 2);
        if (n < 2 || n > (legacy ? 4 : 3) || (n === (legacy ? 4 : 3) && !noreply) || !keyOk(1)) {
          this.reply(n >= 2 && keyOk(1) ? `${BAD_FORMAT}.  Usage: delete <key> [noreply]` : BAD_FORMAT);
          return;
        }
        if (!this.allowed(buf, t[2], t[3])) {
          this.reply(DENIED);
          return;
        }
        const r = this.cache.delete(buf, t[2], t[3], this.scope);
        counters[r === 'DELETED' ? 'deleteHits' : 'deleteMisses']++;
        out(r, noreply);
        return;
      }
      case 'incr':
      case 'decr': {
        const noreply = noreplyAt(3);
        if ((n !== 3 && !noreply) || !keyOk(1)) {
          this.reply(n < 3 ? 'ERROR' : BAD_FORMAT);
          return;
        }
        const delta = u64(buf, t[4], t[5]);
        if (delta === null) {
          this.reply('CLIENT_ERROR invalid numeric delta argument');
          return;
        }
        if (!this.allowed(buf, t[2], t[3])) {
          this.reply(DENIED);
          return;
        }
        const r = this.cache.incr(buf, t[2], t[3], delta, cmd === 'incr', this.scope);
        if (r === null) {
          this.reply('CLIENT_ERROR cannot increment or decrement non-numeric value');
          return;
        }
        counters[r === 'NOT_FOUND' ? `${cmd}Misses` : `${cmd}Hits`]++;
        out(r, noreply);
        return;
      }
      case 'touch': {
        const noreply = noreplyAt(3);
        if ((n !== 3 && !noreply) || !keyOk(1)) {
          this.reply(n < 3 ? 'ERROR' : BAD_FORMAT);
          return;
        }
        const exptime = int(buf, t[4], t[5], true);
        if (Number.isNaN(exptime)) {
          this.reply('CLIENT_ERROR invalid exptime argument');
          return;
        }
        if (!this.allowed(buf, t[2], t[3])) {
          this.reply(DENIED);
          return;
        }
        counters.cmdTouch++;
        const r = this.cache.touch(buf, t[2], t[3], exptime, this.scope);
        counters[r === 'TOUCHED' ? 'touchHits' : 'touchMisses']++;
        out(r, noreply);
        return;
      }
      case 'flush_all': {
        let delay = 0;
        let noreply = false;
        if (n >= 2 && tok(n - 1) === 'noreply') noreply = true;
        const args = n - 1 - (noreply ? 1 : 0);
        if (args > 1) {
          this.reply(BAD_FORMAT);
          return;
        }
        if (args === 1) {
          delay = int(buf, t[2], t[3], true);
          if (Number.isNaN(delay)) {
            this.reply(BAD_FORMAT);
            return;
          }
        }
        counters.cmdFlush++;
        this.cache.flushAll(Math.max(0, delay), this.scope); // bound: only its own tenant
        out('OK', noreply);
        return;
      }
      case 'stats':
        if (n === 1) this.stats();
        else if (n === 2 && tok(1) === 'reset') {
          this.server.resetCounters();
          this.reply('RESET');
        } else this.reply('ERROR');
        return;
      case 'version':
        this.reply(`VERSION ${VERSION}`);
        return;
      case 'verbosity': {
        // "verbosity noreply" (no level) is silent, as memcached is.
        const noreply = tok(n - 1) === 'noreply';
        if (n < 2 || n > 3 || (n === 3 && !noreply)) {
          this.reply('ERROR');
          return;
        }
        out('OK', noreply);
        return;
      }
      case 'quit':
        this.close();
        return;
      case 'debug':
        if (this.server.testFaults) {
          this.server.debug(this, n, tok, buf, t);
          return;
        }
        break;
    }
    this.reply('ERROR');
  }

  version() {
    return VERSION;
  }

  stats() {
    for (const [name, value] of this.statLines()) this.reply(`STAT ${name} ${value}`);
    this.reply('END');
  }

  statLines() {
    const s = this.server;
    const c = s.counterTotals();
    const cc = this.cache.counterTotals();
    const { items, bytes } = this.cache.totals();
    const threads = s.thread === null ? 1 : s.thread.state.threads;
    const now = Math.floor(this.cache.now() / 1000);
    const lines = [
      ['pid', process.pid],
      ['uptime', now - s.started],
      ['time', now],
      ['version', VERSION],
      ['pointer_size', 64],
      ['threads', threads],
      ...(s.thread === null
        ? []
        : [
            // Which thread answers (1-based), and the connections each thread has accepted.
            ['thread_id', s.thread.index + 1],
            ...Array.from({ length: threads }, (_, i) => [`thread_${i + 1}_connections`, counterOfThread(s.thread.state, i, 'totalConnections')]),
          ]),
      ['curr_connections', s.thread === null ? s.connections.size : c.currConnections],
      ['total_connections', c.totalConnections],
      ['rejected_connections', c.rejectedConnections],
      ['write_timeouts', c.writeTimeouts],
      ['read_timeouts', c.readTimeouts],
      ['cmd_get', c.cmdGet],
      ['cmd_set', c.cmdSet],
      ['cmd_flush', c.cmdFlush],
      ['cmd_touch', c.cmdTouch],
      ['get_hits', c.getHits],
      ['get_misses', c.getMisses],
      ['get_expired', cc.expired],
      ['delete_misses', c.deleteMisses],
      ['delete_hits', c.deleteHits],
      ['incr_misses', c.incrMisses],
      ['incr_hits', c.incrHits],
      ['decr_misses', c.decrMisses],
      ['decr_hits', c.decrHits],
      ['touch_hits', c.touchHits],
      ['touch_misses', c.touchMisses],
      ['limit_maxbytes', this.cache.tenantBytes * this.cache.maxTenants],
      ['curr_items', items],
      ['total_items', cc.totalItems],
      ['bytes', bytes],
      ['evictions', cc.evictions],
      ['tenants', this.cache.tenantCount()],
      ['tenant_bytes', this.cache.tenantBytes],
      ['item_size_max', this.cache.maxItemSize],
      ['isolation', this.cache.memory.isolation],
      ['reply_buffer_bytes', s.replies.inUse],
      ['reply_buffer_limit', s.replies.max * s.replies.chunkSize],
      ['reply_buffer_waiters', s.replies.waiters.length],
      ['request_buffer_bytes', s.requests.inUse],
      ['request_buffer_limit', s.requests.max * s.requests.chunkSize],
      ['vmpk_backend', this.cache.memory.backend],
    ];
    const v = this.cache.memory.stats();
    if (v !== null) {
      lines.push(
        ['vmpk_pkru_stubbed', this.cache.memory.pkruStubbed ? 1 : 0],
        ['vmpk_gates', v.gates],
        ['vmpk_gate_hits', v.hits],
        ['vmpk_gate_misses', v.misses],
        ['vmpk_key_evictions', v.evictions],
        ['vmpk_syscalls', v.syscalls],
        ['vmpk_pkey_mprotect_calls', v.pkeyMprotectCalls],
        ['vmpk_mprotect_calls', v.mprotectCalls],
        ['vmpk_pkru_writes', v.pkruWrites],
        ['vmpk_live_vkeys', v.liveVkeys],
        ['vmpk_mapped_bytes', v.mappedBytes],
      );
    }
    return lines;
  }
}

/**
 * The users of --auth-file (memcached -Y): one "user:password" per line.
 * A user's tenant is named by the user name.
 */
export class Auth {
  /** @param {string} text the file's contents */
  constructor(text) {
    /** @type {Map<string, Buffer>} */
    this.users = new Map();
    for (const raw of text.split('\n')) {
      const line = raw.replace(/\r$/, '');
      if (line === '') continue;
      const colon = line.indexOf(':');
      if (colon <= 0) throw new Error('each line of the auth file must be user:password');
      this.users.set(line.slice(0, colon), Buffer.from(line.slice(colon + 1), 'latin1'));
    }
    if (this.users.size === 0) throw new Error('the auth file names no user');
  }

  /** The user name if the password is right, else null (compared in constant time). */
  check(user, password) {
    const want = this.users.get(user);
    const got = Buffer.from(password, 'latin1');
    if (want === undefined || want.length !== got.length) return null;
    return timingSafeEqual(want, got) ? user : null;
  }
}

function freshCounters() {
  return {
    totalConnections: 0, rejectedConnections: 0, writeTimeouts: 0, readTimeouts: 0, cmdGet: 0, cmdSet: 0, cmdFlush: 0, cmdTouch: 0, getHits: 0, getMisses: 0,
    deleteHits: 0, deleteMisses: 0, incrHits: 0, incrMisses: 0, decrHits: 0, decrMisses: 0, touchHits: 0, touchMisses: 0,
  };
}

/** The server's counters; with --threads, each thread has a row of them in shared memory. */
export const SERVER_COUNTERS = [...Object.keys(freshCounters()), 'currConnections'];

/** Test mode's debug hold when the server has no threads: a word for it to wait on. */
const soloState = () => ({ threads: 1, control: new Int32Array(new SharedArrayBuffer(64)) });

export class Server {
  /**
   * @param {object} o
   * @param {ReturnType<import('./memory.mjs').createMemory>} o.memory
   * @param {number} o.tenantBytes
   * @param {number} o.maxItemSize
   * @param {{ kind: 'prefix', separator: number } | { kind: 'hash', count: number }} o.tenants
   * @param {number} o.maxTenants
   * @param {number} o.maxConnections
   * @param {boolean} o.testFaults enables the debug commands (fault injection, clock)
   * @param {Auth | null} [o.auth] --auth-file: connections authenticate and are bound to their user's tenant
   * @param {number} [o.replyMemory] bytes of reply buffers for all connections together
   * @param {number} [o.requestMemory] bytes of buffers for values that arrive in pieces
   * @param {number} [o.writeTimeout] seconds a client may leave replies unread (0: forever)
   * @param {number} [o.readTimeout] seconds a client holding request chunks may send nothing (0: forever)
   * @param {{ state: any, index: number, directory: import('./shared.mjs').Directory } | null} [o.thread]
   *   --threads N: this worker's index and what the threads share
   */
  constructor(o) {
    this.thread = o.thread ?? null;
    this.cache = new Cache({ ...o, shared: this.thread && { state: this.thread.state, thread: this.thread.index, directory: this.thread.directory } });
    this.auth = o.auth ?? null;
    this.writeTimeout = o.writeTimeout ?? 30;
    this.readTimeout = o.readTimeout ?? 30;
    this.separator = o.tenants.kind === 'prefix' ? o.tenants.separator : 0x3a;
    // Each pool holds at least one largest item (and its CR LF).
    const least = this.cache.maxItemSize + 2 + CHUNK;
    this.replies = new Pool(CHUNK, Math.max(o.replyMemory ?? 32 << 20, least));
    this.requests = new Pool(CHUNK, Math.max(o.requestMemory ?? 32 << 20, least));
    this.maxConnections = o.maxConnections;
    this.testFaults = o.testFaults;
    this.faults = null;
    this.counters = this.thread === null ? freshCounters() : counterRow(this.thread.state, this.thread.index, SERVER_COUNTERS);
    this.holdState = this.thread === null ? null : this.thread.state;
    this.started = Math.floor(Date.now() / 1000);
    /** @type {Set<Connection>} */
    this.connections = new Set();
    this.net = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
  }

  accept(socket) {
    if (this.connections.size >= this.maxConnections) {
      this.counters.rejectedConnections++;
      socket.on('error', () => socket.destroy());
      socket.end('SERVER_ERROR too many open connections\r\n');
      return;
    }
    this.counters.totalConnections++;
    this.connections.add(new Connection(this, socket));
    this.countConnections();
  }

  countConnections() {
    if (this.thread !== null) this.counters.currConnections = this.connections.size;
  }

  /** Every thread's counters summed (the object itself without threads). */
  counterTotals() {
    return this.thread === null ? this.counters : counterTotals(this.thread.state, SERVER_COUNTERS);
  }

  resetCounters() {
    if (this.thread !== null) {
      resetCounters(this.thread.state, ['totalConnections', 'currConnections']);
      return;
    }
    const { totalConnections } = this.counters;
    this.counters = freshCounters();
    this.counters.totalConnections = totalConnections;
    this.cache.counters.evictions = 0;
    this.cache.counters.expired = 0;
    this.cache.counters.totalItems = 0;
  }

  /** Test mode only: `debug clock|tenant|oob-write|oob-read ...`. */
  debug(conn, n, tok, buf, t) {
    const sub = n >= 2 ? tok(1) : '';
    if (sub === 'clock' && n === 3) {
      const s = Number(tok(2));
      if (!Number.isInteger(s)) return conn.reply(BAD_FORMAT);
      this.cache.clockOffset += s * 1000;
      return conn.reply('OK');
    }
    if (sub === 'tenant' && n === 3) {
      const r = this.cache.tenantStats(buf, t[4], t[5]);
      return conn.reply(`TENANT ${r.id} items ${r.items} bytes ${r.bytes} evictions ${r.evictions} used ${r.used} limit ${r.limit}`);
    }
    // `debug hold <key> <seconds>`: this thread sits inside the gate of the
    // key's tenant (a request of that tenant in progress, as another thread
    // sees it) until `debug release` or the seconds pass; it takes no tenant
    // lock, so the fault injection can still aim at the tenant's items.
    // `debug held`: which thread (1-based) is holding, or none.
    if (sub === 'hold' && n === 4) {
      const seconds = Number(tok(3));
      if (!Number.isInteger(seconds) || seconds < 1 || seconds > 600) return conn.reply(BAD_FORMAT);
      const [, th] = hashKey(buf, t[4], t[5]);
      const tenant = this.cache.tenantOf(buf, t[4], t[5], th, false, conn.scope);
      if (tenant === null) return conn.reply('NOT_FOUND');
      this.holdState ??= soloState();
      const thread = this.thread === null ? 0 : this.thread.index;
      const r = tenant.memory.read(() => {
        void tenant.memory.bytes()[0]; // the gate is open here
        return holdHere(this.holdState, thread, seconds);
      });
      return conn.reply(r);
    }
    if (sub === 'held' && n === 2) return conn.reply(`HELD ${held((this.holdState ??= soloState())) || 'none'}`);
    if (sub === 'release' && n === 2) {
      release((this.holdState ??= soloState()));
      return conn.reply('OK');
    }
    if ((sub === 'oob-write' && n === 5) || (sub === 'oob-read' && n === 4)) {
      return this.faults.inject(conn, sub, buf, t, n === 5 ? Number(tok(4)) : 0);
    }
    conn.reply('ERROR');
  }

  /**
   * @param {{ reusePort?: boolean, fd?: number }} [share] --threads: each
   *   worker listens on the port with SO_REUSEPORT, or on the first worker's descriptor
   * @returns {Promise<net.AddressInfo>}
   */
  listen(port, host, share = {}) {
    return new Promise((resolve, reject) => {
      this.net.once('error', reject);
      const where = share.fd !== undefined ? { fd: share.fd } : share.reusePort ? { port, host, reusePort: true } : { port, host };
      this.net.listen(where, () => {
        this.net.off('error', reject);
        resolve(/** @type {net.AddressInfo} */ (this.net.address()));
      });
    });
  }

  async close() {
    for (const c of this.connections) c.socket.destroy();
    await new Promise((resolve) => this.net.close(() => resolve()));
    this.cache.close();
  }
}
