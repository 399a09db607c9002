// The memcached meta protocol's commands (mg, ms, md, ma, mn, me) with the
// flags clients use. Each is one line (ms: and a data block); a flag is one
// letter, some with a token (O123, T60, F5, C99, N30, J0, D2, MS).
import { WAIT } from './store.mjs';

const BAD = 'CLIENT_ERROR bad command line format';

const INVALID_FLAG = 'CLIENT_ERROR invalid flag';

/** The flags of tokens [from, n): Map of letter to token text ('' when none), or null if one is no letter. */
function flagsOf(buf, t, from, n) {
  const f = new Map();
  for (let i = from; i < n; i++) {
    const s = t[2 * i];
    const e = t[2 * i + 1];
    const c = String.fromCharCode(buf[s]);
    if (!/[a-zA-Z]/.test(c)) return null;
    f.set(c, buf.toString('latin1', s + 1, e));
  }
  return f;
}

/** The key [kb, ks, ke], decoded from base64 with the b flag; null if invalid. */
function keyOf(buf, t, f) {
  const ks = t[2];
  const ke = t[3];
  if (!f.has('b')) return ke - ks > 250 ? null : [buf, ks, ke];
  const text = buf.toString('latin1', ks, ke);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return null;
  const kb = Buffer.from(text, 'base64');
  return kb.length === 0 || kb.length > 250 ? null : [kb, 0, kb.length];
}

/**
 * The return flags, in the order the request gave them: O (opaque), k (the
 * key as sent), b (with k), and whatever `values` has (f, s, c, t).
 */
function echo(buf, t, f, values = {}) {
  let out = '';
  for (const c of f.keys()) {
    if (c === 'O') out += ` O${f.get('O')}`;
    else if (c === 'k') out += ` k${buf.toString('latin1', t[2], t[3])}${f.has('b') ? ' b' : ''}`;
    else if (values[c] !== undefined) out += ` ${c}${values[c]}`;
  }
  return out;
}

function num(text, signed = true) {
  return /^-?[0-9]{1,10}$/.test(text) && (signed || text[0] !== '-') ? Number(text) : NaN;
}

/**
 * One meta command; `cmd` is mg/md/ma/mn/me (ms goes through meta.store).
 * Returns false when it must wait for reply chunks (run it again later).
 */
export function command(conn, cmd, buf, n, t) {
  if (cmd === 'mn') {
    conn.reply('MN');
    return true;
  }
  if (n < 2) {
    conn.reply('ERROR');
    return true;
  }
  const f = flagsOf(buf, t, 2, n);
  const key = f && keyOf(buf, t, f);
  if (f === null || key === null) {
    conn.reply(f === null ? INVALID_FLAG : BAD);
    return true;
  }
  const [kb, ks, ke] = key;
  if (!conn.allowed(kb, ks, ke)) {
    conn.reply('CLIENT_ERROR access denied: the key names another tenant');
    return true;
  }
  const cache = conn.cache;
  const scope = conn.scope ?? null;
  const quiet = f.has('q');
  const counters = conn.server.counters;
  switch (cmd) {
    case 'mg':
    case 'me': {
      if (f.has('T')) {
        const ttl = num(f.get('T'));
        if (Number.isNaN(ttl)) return conn.reply(BAD), true;
        counters.cmdTouch++;
        cache.touch(kb, ks, ke, ttl, scope);
      }
      const wantValue = cmd === 'mg' && f.has('v');
      const hit = cache.get(kb, ks, ke, wantValue ? (v) => conn.takeReply(v) : () => [], scope);
      if (hit === WAIT) return false;
      counters.cmdGet++;
      if (hit === null) {
        counters.getMisses++;
        if (!quiet) conn.reply(`EN${cmd === 'mg' ? echo(buf, t, f) : ''}`);
        return true;
      }
      counters.getHits++;
      if (cmd === 'me') {
        const exp = hit.exp === 0 ? -1 : Math.max(0, Math.ceil((hit.exp - cache.now()) / 1000));
        conn.reply(`ME ${buf.toString('latin1', t[2], t[3])} exp=${exp} la=0 cas=${hit.cas} fetch=no cls=1 size=${hit.vlen}`);
        return true;
      }
      const ttl = hit.exp === 0 ? -1 : Math.max(0, Math.ceil((hit.exp - cache.now()) / 1000));
      const ret = echo(buf, t, f, { f: hit.flags, s: hit.vlen, c: hit.cas, t: ttl });
      // q hides only a miss (EN) of mg; a hit is answered, as in memcached.
      if (wantValue) conn.replyValue(`VA ${hit.vlen}${ret}\r\n`, hit);
      else conn.reply(`HD${ret}`);
      return true;
    }
    case 'md': {
      const r = cache.delete(kb, ks, ke, scope);
      counters[r === 'DELETED' ? 'deleteHits' : 'deleteMisses']++;
      if (r === 'DELETED') {
        if (!quiet) conn.reply(`HD${echo(buf, t, f)}`);
      } else conn.reply(`NF${echo(buf, t, f)}`);
      return true;
    }
    case 'ma': {
      const mode = f.get('M') ?? 'I';
      const up = mode === 'I' || mode === 'i' || mode === '+';
      if (!up && !(mode === 'D' || mode === 'd' || mode === '-')) return conn.reply(BAD), true;
      const deltaText = f.get('D') ?? '1';
      if (!/^[0-9]{1,20}$/.test(deltaText) || BigInt(deltaText) >= 1n << 64n) {
        conn.reply('CLIENT_ERROR invalid numeric delta argument');
        return true;
      }
      let r = cache.incr(kb, ks, ke, BigInt(deltaText), up, scope);
      if (r === 'NOT_FOUND' && f.has('N')) {
        const ttl = num(f.get('N'));
        const initial = f.get('J') ?? '0';
        if (Number.isNaN(ttl) || !/^[0-9]{1,20}$/.test(initial)) return conn.reply(BAD), true;
        const v = Buffer.from(BigInt(initial).toString(), 'latin1');
        cache.store('add', kb, ks, ke, 0, ttl, [[v, 0, v.length]], 0, scope);
        r = BigInt(initial).toString();
      }
      if (r === null) {
        conn.reply('CLIENT_ERROR cannot increment or decrement non-numeric value');
        return true;
      }
      if (r === 'NOT_FOUND') {
        counters[up ? 'incrMisses' : 'decrMisses']++;
        conn.reply(`NF${echo(buf, t, f)}`);
        return true;
      }
      counters[up ? 'incrHits' : 'decrHits']++;
      const ret = echo(buf, t, f, { c: cache.cas });
      if (f.has('v')) conn.reply(`VA ${r.length}${ret}\r\n${r}`);
      else if (!quiet) conn.reply(`HD${ret}`);
      return true;
    }
  }
  conn.reply('ERROR');
  return true;
}

/**
 * ms <key> <datalen> <flags>*: the parsed command for Connection.storage's
 * data-block handling, or an error line.
 */
export function parseStore(buf, n, t) {
  if (n < 3) return { error: BAD };
  const f = flagsOf(buf, t, 3, n);
  const key = f && keyOf(buf, t, f);
  const bytes = num(buf.toString('latin1', t[4], t[5]), false);
  if (f === null || key === null || Number.isNaN(bytes)) return { error: f === null ? INVALID_FLAG : BAD, bytes: Number.isNaN(bytes) ? -1 : bytes };
  const modes = { S: 'set', s: 'set', E: 'add', e: 'add', A: 'append', a: 'append', P: 'prepend', p: 'prepend', R: 'replace', r: 'replace' };
  const cmd = modes[f.get('M') ?? 'S'];
  const flags = f.has('F') ? num(f.get('F'), false) : 0;
  const ttl = f.has('T') ? num(f.get('T')) : 0;
  const cas = f.has('C') ? num(f.get('C'), false) : 0;
  if (cmd === undefined || Number.isNaN(flags) || Number.isNaN(ttl) || Number.isNaN(cas)) return { error: BAD, bytes };
  return { key, bytes, cmd: f.has('C') && (cmd === 'set' || cmd === 'replace') ? 'cas' : cmd, flags, ttl, cas, f, buf, t: Int32Array.from(t.subarray(0, 2 * n)), quiet: f.has('q') };
}

/** The reply line of ms for the store's result. */
export function storeReply(conn, m, r) {
  const code = { STORED: 'HD', NOT_STORED: 'NS', EXISTS: 'EX', NOT_FOUND: 'NF' }[r];
  if (code === 'HD' && m.quiet) return;
  conn.reply(`${code}${echo(m.buf, m.t, m.f, code === 'HD' ? { c: conn.cache.cas } : {})}`);
}
