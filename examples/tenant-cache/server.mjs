// The memcached text protocol over TCP: framing, parsing and replies. The
// semantics of each command are in store.mjs; this file only reads lines and
// data blocks, checks arguments and writes the protocol's replies.
import net from 'node:net';
import { Cache, CacheError } from './store.mjs';

export const VERSION = '1.6.0-vmpk-cache';
const MAX_KEY = 250;
// A command line may be this long (a multi-get of 256 full-length keys);
// longer without a newline is an error and the connection closes.
const MAX_LINE = 64 * 1024;
const MAX_TOKENS = 24; // for every command but get/gets
const OUT_HIGH_WATER = 16 << 20; // stop reading a client that does not read its replies

const BAD_FORMAT = 'CLIENT_ERROR bad command line format';
const STORAGE = new Set(['set', 'add', 'replace', 'append', 'prepend', 'cas']);

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
    this.rest = null; // unparsed bytes from earlier data events
    this.pending = null; // a storage command waiting for its data block
    this.parts = []; // replies of this data event, written at once
    this.text = '';
    this.closing = false;
    this.tokens = new Int32Array(2 * MAX_TOKENS);
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('drain', () => socket.resume());
    socket.on('error', () => socket.destroy()); // a reset client: nothing to answer
    socket.on('close', () => server.connections.delete(this));
  }

  reply(line) {
    this.text += line + '\r\n';
  }

  replyBuffer(buf) {
    if (this.text) this.parts.push(Buffer.from(this.text, 'latin1'));
    this.text = '';
    this.parts.push(buf);
  }

  flush() {
    if (this.parts.length) {
      if (this.text) this.parts.push(Buffer.from(this.text, 'latin1'));
      this.socket.write(this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts));
      this.parts = [];
    } else if (this.text) {
      this.socket.write(this.text, 'latin1');
    }
    this.text = '';
    if (this.socket.writableLength > OUT_HIGH_WATER) this.socket.pause();
  }

  close() {
    this.closing = true;
    this.flush();
    this.socket.end();
  }

  onData(chunk) {
    if (this.closing) return;
    let buf = chunk;
    if (this.rest !== null) {
      buf = Buffer.concat([this.rest, chunk]);
      this.rest = null;
    }
    let pos = 0;
    while (pos < buf.length && !this.closing) {
      if (this.pending !== null) {
        pos = this.fill(buf, pos);
        continue;
      }
      const nl = buf.indexOf(0x0a, pos);
      if (nl < 0) {
        if (buf.length - pos > MAX_LINE) {
          this.reply('CLIENT_ERROR line too long');
          this.close();
          return;
        }
        this.rest = buf.subarray(pos);
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
    this.flush();
  }

  /** Takes bytes of a pending data block; runs the command when it is complete. */
  fill(buf, pos) {
    const p = this.pending;
    const n = Math.min(buf.length - pos, p.need - p.got);
    if (p.data !== null) buf.copy(p.data, p.got, pos, pos + n);
    p.got += n;
    if (p.got === p.need) {
      this.pending = null;
      if (p.data !== null) this.complete(p, p.data, 0);
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
    try {
      if (cmd === 'get' || cmd === 'gets') {
        this.retrieve(buf, s, e, cmd === 'gets');
        return next;
      }
      if (n < 0) {
        this.reply('ERROR');
        return next;
      }
      if (STORAGE.has(cmd)) return this.storage(cmd, buf, n, next);
      this.command(cmd, buf, n);
    } catch (err) {
      this.reply(err instanceof CacheError ? err.message : `SERVER_ERROR ${String(err.message ?? err).split('\n')[0]}`);
    }
    return next;
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
      keys.push(start, i);
    }
    if (keys.length === 0) {
      this.reply('ERROR');
      return;
    }
    const stats = this.server.counters;
    for (let k = 0; k < keys.length; k += 2) {
      const ks = keys[k];
      const ke = keys[k + 1];
      stats.cmdGet++;
      const hit = this.cache.get(buf, ks, ke);
      if (hit === null) {
        stats.getMisses++;
        continue;
      }
      stats.getHits++;
      const key = buf.toString('latin1', ks, ke);
      this.reply(`VALUE ${key} ${hit.flags} ${hit.value.length}${withCas ? ` ${hit.cas}` : ''}`);
      this.replyBuffer(hit.value);
      this.text += '\r\n';
    }
    this.reply('END');
  }

  storage(cmd, buf, n, next) {
    const t = this.tokens;
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
    let error = null;
    if (ke - ks > MAX_KEY || !(flags <= 0xffffffff) || Number.isNaN(exptime) || casUnique === null || (n === base + 1 && !noreply)) error = BAD_FORMAT;
    else if (ke - ks + bytes > this.cache.maxItemSize) error = 'SERVER_ERROR object too large for cache';
    const p = {
      cmd, flags, exptime, noreply, need: bytes + 2, got: 0, data: null, casUnique: isCas ? Number(casUnique) : 0,
      key: null, error,
    };
    if (error !== null) {
      // The data block follows anyway: skip it, so the client's next command is read as one.
      this.reply(error);
      this.pending = p;
      return next;
    }
    this.server.counters.cmdSet++;
    if (buf.length - next >= bytes + 2) {
      // The whole block is here: store straight from the buffer.
      p.key = [buf, ks, ke];
      this.complete(p, buf, next);
      return next + bytes + 2;
    }
    p.key = [Buffer.from(buf.subarray(ks, ke)), 0, ke - ks];
    p.data = Buffer.allocUnsafe(bytes + 2);
    this.pending = p;
    return next;
  }

  /** Runs a storage command whose data block is data[ds, ds + need). */
  complete(p, data, ds) {
    const dlen = p.need - 2;
    if (data[ds + dlen] !== 0x0d || data[ds + dlen + 1] !== 0x0a) {
      this.reply('CLIENT_ERROR bad data chunk');
      return;
    }
    const [kb, ks, ke] = p.key;
    let r;
    try {
      r = this.cache.store(p.cmd, kb, ks, ke, p.flags, p.exptime, data, ds, dlen, p.casUnique);
    } catch (err) {
      this.reply(err instanceof CacheError ? err.message : `SERVER_ERROR ${err.message}`);
      return;
    }
    if (!p.noreply) this.reply(r);
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
        const r = this.cache.delete(buf, t[2], t[3]);
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
        const r = this.cache.incr(buf, t[2], t[3], delta, cmd === 'incr');
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
        counters.cmdTouch++;
        const r = this.cache.touch(buf, t[2], t[3], exptime);
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
        this.cache.flushAll(Math.max(0, delay));
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

  stats() {
    const s = this.server;
    const c = s.counters;
    const { items, bytes } = this.cache.totals();
    const now = Math.floor(this.cache.now() / 1000);
    const lines = [
      ['pid', process.pid],
      ['uptime', now - s.started],
      ['time', now],
      ['version', VERSION],
      ['pointer_size', 64],
      ['threads', 1],
      ['curr_connections', s.connections.size],
      ['total_connections', c.totalConnections],
      ['rejected_connections', c.rejectedConnections],
      ['cmd_get', c.cmdGet],
      ['cmd_set', c.cmdSet],
      ['cmd_flush', c.cmdFlush],
      ['cmd_touch', c.cmdTouch],
      ['get_hits', c.getHits],
      ['get_misses', c.getMisses],
      ['get_expired', this.cache.counters.expired],
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
      ['total_items', this.cache.counters.totalItems],
      ['bytes', bytes],
      ['evictions', this.cache.counters.evictions],
      ['tenants', this.cache.list.length],
      ['tenant_bytes', this.cache.tenantBytes],
      ['item_size_max', this.cache.maxItemSize],
      ['isolation', this.cache.memory.isolation],
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
    for (const [name, value] of lines) this.reply(`STAT ${name} ${value}`);
    this.reply('END');
  }
}

function freshCounters() {
  return {
    totalConnections: 0, rejectedConnections: 0, cmdGet: 0, cmdSet: 0, cmdFlush: 0, cmdTouch: 0, getHits: 0, getMisses: 0,
    deleteHits: 0, deleteMisses: 0, incrHits: 0, incrMisses: 0, decrHits: 0, decrMisses: 0, touchHits: 0, touchMisses: 0,
  };
}

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
   */
  constructor(o) {
    this.cache = new Cache(o);
    this.maxConnections = o.maxConnections;
    this.testFaults = o.testFaults;
    this.faults = null;
    this.counters = freshCounters();
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
  }

  resetCounters() {
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
    if ((sub === 'oob-write' && n === 5) || (sub === 'oob-read' && n === 4)) {
      return this.faults.inject(conn, sub, buf, t, n === 5 ? Number(tok(4)) : 0);
    }
    conn.reply('ERROR');
  }

  /** @returns {Promise<net.AddressInfo>} */
  listen(port, host) {
    return new Promise((resolve, reject) => {
      this.net.once('error', reject);
      this.net.listen(port, host, () => {
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
