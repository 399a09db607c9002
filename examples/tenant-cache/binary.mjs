// The memcached binary protocol (what memjs and the libmemcached tools
// speak): one 24-byte header, then extras, key and value. A connection whose
// first byte is 0x80 speaks it, as in memcached. With --auth-file a
// connection authenticates by SASL PLAIN and is bound to its user's tenant.
import { CacheError, WAIT } from './store.mjs';

export const REQ = 0x80;
const RES = 0x81;
const HEADER = 24;

export const S = {
  OK: 0x00, NOT_FOUND: 0x01, EXISTS: 0x02, TOO_LARGE: 0x03, INVALID: 0x04, NOT_STORED: 0x05, NON_NUMERIC: 0x06,
  AUTH_ERROR: 0x20, UNKNOWN: 0x81, NO_MEMORY: 0x82,
};
const MESSAGE = {
  [S.NOT_FOUND]: 'Not found', [S.EXISTS]: 'Data exists for key.', [S.TOO_LARGE]: 'Too large.', [S.INVALID]: 'Invalid arguments',
  [S.NOT_STORED]: 'Not stored.', [S.NON_NUMERIC]: 'Non-numeric server-side value for incr or decr', [S.AUTH_ERROR]: 'Auth failure.',
  [S.UNKNOWN]: 'Unknown command', [S.NO_MEMORY]: 'Out of memory',
};

// opcode: [name, quiet]
const OPS = new Map([
  [0x00, ['get', false]], [0x09, ['get', true]], [0x0c, ['getk', false]], [0x0d, ['getk', true]],
  [0x01, ['set', false]], [0x11, ['set', true]], [0x02, ['add', false]], [0x12, ['add', true]],
  [0x03, ['replace', false]], [0x13, ['replace', true]], [0x0e, ['append', false]], [0x19, ['append', true]],
  [0x0f, ['prepend', false]], [0x1a, ['prepend', true]], [0x04, ['delete', false]], [0x14, ['delete', true]],
  [0x05, ['incr', false]], [0x15, ['incr', true]], [0x06, ['decr', false]], [0x16, ['decr', true]],
  [0x07, ['quit', false]], [0x17, ['quit', true]], [0x08, ['flush', false]], [0x18, ['flush', true]],
  [0x0a, ['noop', false]], [0x0b, ['version', false]], [0x10, ['stat', false]],
  [0x1c, ['touch', false]], [0x1d, ['gat', false]], [0x1e, ['gat', true]], [0x23, ['gatk', false]], [0x24, ['gatk', true]],
  [0x20, ['sasl-list', false]], [0x21, ['sasl-auth', false]], [0x22, ['sasl-step', false]],
]);
const U64 = (1n << 64n) - 1n;

/** One response header (and extras/key/value when given as buffers). */
export function response(opcode, status, opaque, cas, extras, key, value) {
  const el = extras?.length ?? 0;
  const kl = key?.length ?? 0;
  const vl = value?.length ?? 0;
  const b = Buffer.alloc(HEADER + el + kl + vl);
  b[0] = RES;
  b[1] = opcode;
  b.writeUInt16BE(kl, 2);
  b[4] = el;
  b.writeUInt16BE(status, 6);
  b.writeUInt32BE(el + kl + vl, 8);
  b.writeUInt32BE(opaque, 12);
  b.writeBigUInt64BE(BigInt(cas), 16);
  if (el) extras.copy(b, HEADER);
  if (kl) key.copy(b, HEADER + el);
  if (vl) value.copy(b, HEADER + el + kl);
  return b;
}

/** The body length a header at buf[pos] announces, or -1 if it is no request header. */
export function bodyLength(buf, pos) {
  if (buf[pos] !== REQ) return -1;
  return buf.readUInt32BE(pos + 8);
}

/**
 * Runs one request. `head` holds the header at hs and then (contiguously)
 * extras and key; the value is `pieces` ([buffer, start, length]).
 * Returns false when the connection must wait for reply chunks (the request
 * is then run again later), true when done.
 */
export function handle(conn, head, hs, pieces) {
  if (conn.closing) return true;
  const opcode = head[hs + 1];
  const klen = head.readUInt16BE(hs + 2);
  const elen = head[hs + 4];
  const blen = head.readUInt32BE(hs + 8);
  const opaque = head.readUInt32BE(hs + 12);
  const cas = head.readBigUInt64BE(hs + 16);
  const es = hs + HEADER;
  const ks = es + elen;
  const ke = ks + klen;
  let vlen = 0;
  for (const [, , n] of pieces) vlen += n;
  const op = OPS.get(opcode);
  const send = (b) => conn.socket.write(b);
  const fail = (status, key = null) => {
    // A miss of getk/gatk carries the key and no message.
    send(response(opcode, status, opaque, 0, null, key, key === null ? Buffer.from(MESSAGE[status] ?? 'Error') : null));
    // memcached closes a connection that sent a malformed request.
    if (status === S.INVALID) conn.close();
    return true;
  };
  if (op === undefined || elen + klen > blen) return fail(op === undefined ? S.UNKNOWN : S.INVALID);
  const [name, quiet] = op;
  const server = conn.server;
  const cache = conn.cache;
  const counters = server.counters;

  if (conn.scope === undefined && !['sasl-list', 'sasl-auth', 'sasl-step', 'version', 'noop', 'quit'].includes(name)) return fail(S.AUTH_ERROR);
  if (klen > 250) return fail(S.INVALID);
  if (klen > 0 && conn.scope !== undefined && !conn.allowed(head, ks, ke)) return fail(S.AUTH_ERROR);
  const needsKey = !['quit', 'flush', 'noop', 'version', 'stat', 'sasl-list', 'sasl-auth', 'sasl-step'].includes(name);
  if (needsKey && klen === 0) return fail(S.INVALID);
  const scope = conn.scope ?? null;

  try {
    switch (name) {
      case 'get':
      case 'getk':
      case 'gat':
      case 'gatk': {
        const touch = name === 'gat' || name === 'gatk';
        if (elen !== (touch ? 4 : 0) || vlen !== 0) return fail(S.INVALID);
        if (touch) {
          counters.cmdTouch++;
          const r = cache.touch(head, ks, ke, exptimeOf(head.readUInt32BE(es)), scope);
          counters[r === 'TOUCHED' ? 'touchHits' : 'touchMisses']++;
        }
        const hit = cache.get(head, ks, ke, (n) => conn.takeReply(n), scope);
        if (hit === WAIT) return false;
        counters.cmdGet++;
        if (hit === null) {
          counters.getMisses++;
          if (!quiet) {
            const withKey = name === 'getk' || name === 'gatk';
            fail(S.NOT_FOUND, withKey ? head.subarray(ks, ke) : null);
          }
          return true;
        }
        counters.getHits++;
        const key = name === 'getk' || name === 'gatk' ? head.subarray(ks, ke) : null;
        const extras = Buffer.alloc(4);
        extras.writeUInt32BE(hit.flags >>> 0);
        const h = response(opcode, S.OK, opaque, hit.cas, extras, key, null);
        h.writeUInt32BE(4 + (key?.length ?? 0) + hit.vlen, 8);
        conn.replyValueBinary(h, hit);
        return true;
      }
      case 'set':
      case 'add':
      case 'replace':
      case 'append':
      case 'prepend': {
        const append = name === 'append' || name === 'prepend';
        if (elen !== (append ? 0 : 8)) return fail(S.INVALID);
        if (klen + vlen > cache.maxItemSize) return fail(S.TOO_LARGE);
        const flags = append ? 0 : head.readUInt32BE(es);
        const exptime = append ? 0 : exptimeOf(head.readUInt32BE(es + 4));
        counters.cmdSet++;
        let cmd = name;
        if (cas !== 0n && (name === 'set' || name === 'replace')) cmd = 'cas';
        const r = cache.store(cmd, head, ks, ke, flags, exptime, pieces, Number(cas), scope);
        const status = { STORED: S.OK, NOT_STORED: name === 'add' ? S.EXISTS : name === 'replace' ? S.NOT_FOUND : S.NOT_STORED, EXISTS: S.EXISTS, NOT_FOUND: S.NOT_FOUND }[r];
        if (status !== S.OK) return fail(status);
        if (!quiet) send(response(opcode, S.OK, opaque, cache.cas, null, null, null));
        return true;
      }
      case 'delete': {
        if (elen !== 0 || vlen !== 0) return fail(S.INVALID);
        const r = cache.delete(head, ks, ke, scope);
        counters[r === 'DELETED' ? 'deleteHits' : 'deleteMisses']++;
        if (r !== 'DELETED') return fail(S.NOT_FOUND);
        if (!quiet) send(response(opcode, S.OK, opaque, 0, null, null, null));
        return true;
      }
      case 'incr':
      case 'decr': {
        if (elen !== 20 || vlen !== 0) return fail(S.INVALID);
        const delta = head.readBigUInt64BE(es);
        const initial = head.readBigUInt64BE(es + 8);
        const exp = head.readUInt32BE(es + 16);
        let r = cache.incr(head, ks, ke, delta, name === 'incr', scope);
        if (r === 'NOT_FOUND') {
          counters[`${name}Misses`]++;
          if (exp === 0xffffffff) return fail(S.NOT_FOUND);
          const text = Buffer.from(initial.toString(), 'latin1');
          if (cache.store('add', head, ks, ke, 0, exptimeOf(exp), [[text, 0, text.length]], 0, scope) !== 'STORED') return fail(S.EXISTS);
          r = initial.toString();
        } else if (r === null) return fail(S.NON_NUMERIC);
        else counters[`${name}Hits`]++;
        if (!quiet) {
          const v = Buffer.alloc(8);
          v.writeBigUInt64BE(BigInt(r) & U64);
          send(response(opcode, S.OK, opaque, cache.cas, null, null, v));
        }
        return true;
      }
      case 'touch': {
        if (elen !== 4 || vlen !== 0) return fail(S.INVALID);
        // memcached answers a touch as a get without the value: flags and CAS.
        counters.cmdTouch++;
        const r = cache.touch(head, ks, ke, exptimeOf(head.readUInt32BE(es)), scope);
        counters[r === 'TOUCHED' ? 'touchHits' : 'touchMisses']++;
        if (r !== 'TOUCHED') return fail(S.NOT_FOUND);
        const hit = cache.get(head, ks, ke, () => [], scope);
        if (hit === null) return fail(S.NOT_FOUND);
        const extras = Buffer.alloc(4);
        extras.writeUInt32BE(hit.flags >>> 0);
        send(response(opcode, S.OK, opaque, hit.cas, extras, null, null));
        return true;
      }
      case 'flush': {
        if ((elen !== 0 && elen !== 4) || vlen !== 0) return fail(S.INVALID);
        counters.cmdFlush++;
        cache.flushAll(elen === 4 ? head.readUInt32BE(es) : 0, scope);
        if (!quiet) send(response(opcode, S.OK, opaque, 0, null, null, null));
        return true;
      }
      case 'noop':
        send(response(opcode, S.OK, opaque, 0, null, null, null));
        return true;
      case 'version':
        send(response(opcode, S.OK, opaque, 0, null, null, Buffer.from(conn.version())));
        return true;
      case 'quit':
        if (!quiet) send(response(opcode, S.OK, opaque, 0, null, null, null));
        conn.close();
        return true;
      case 'stat': {
        for (const [k, v] of conn.statLines()) send(response(opcode, S.OK, opaque, 0, null, Buffer.from(k), Buffer.from(String(v))));
        send(response(opcode, S.OK, opaque, 0, null, null, null));
        return true;
      }
      case 'sasl-list':
        if (server.auth === null) return fail(S.UNKNOWN);
        send(response(opcode, S.OK, opaque, 0, null, null, Buffer.from('PLAIN')));
        return true;
      case 'sasl-auth':
      case 'sasl-step': {
        if (server.auth === null) return fail(S.UNKNOWN);
        const mech = head.toString('latin1', ks, ke);
        const data = Buffer.concat(pieces.map(([b, s, n]) => b.subarray(s, s + n))).toString('latin1');
        // PLAIN: [authzid] NUL authcid NUL password (RFC 4616).
        const parts = data.split('\0');
        const user = mech === 'PLAIN' && parts.length === 3 && (parts[0] === '' || parts[0] === parts[1]) ? server.auth.check(parts[1], parts[2]) : null;
        if (user === null) return fail(S.AUTH_ERROR);
        conn.bind(user);
        send(response(opcode, S.OK, opaque, 0, null, null, Buffer.from('Authenticated')));
        return true;
      }
    }
  } catch (err) {
    if (err instanceof CacheError) return fail(err.message.includes('too large') ? S.TOO_LARGE : S.NO_MEMORY);
    throw err;
  }
  return fail(S.UNKNOWN);
}

/** The binary protocol's exptime is unsigned: above 30 days it is a unix time, however far. */
function exptimeOf(u32) {
  return u32;
}
