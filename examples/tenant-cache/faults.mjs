// Test-only fault injection (the server's --test-faults): a request handler
// with an out-of-bounds bug. `debug oob-write <key> <victim-key> <byte>`
// runs in the gate of <key>'s tenant and writes one byte at an address
// computed from that tenant's memory that lies past its end, in another
// tenant's memory: exactly on the first value byte of <victim-key>.
// `debug oob-read <key> <victim-key>` reads the victim's value that way.
// With vmpk the access faults and the process dies by SIGSEGV after vmpk's
// report; with isolation off it succeeds, which is the bug the tests show.
import koffi from 'koffi';
import { hashKey } from './store.mjs';

export class Faults {
  /** @param {import('./store.mjs').Cache} cache */
  constructor(cache) {
    this.cache = cache;
  }

  /** An array over `length` bytes at `offset` from the attacker's first byte, bounds unchecked. */
  outOfBounds(attacker, victim, target, length) {
    const a = attacker.memory;
    const v = victim.memory;
    if (this.cache.memory.isolation === 'vmpk') {
      const offset = v.address() - a.address() + BigInt(target);
      return new Uint8Array(koffi.view(a.address() + offset, length));
    }
    const av = a.bytes();
    const vv = v.bytes();
    if (av.buffer !== vv.buffer) return null; // not neighbours in one heap chunk
    return new Uint8Array(av.buffer, vv.byteOffset + target, length);
  }

  inject(conn, sub, buf, t, byte) {
    const cache = this.cache;
    const [, ath] = hashKey(buf, t[4], t[5]);
    const attacker = cache.tenantOf(buf, t[4], t[5], ath);
    const [vh, vth] = hashKey(buf, t[6], t[7]);
    const victim = cache.tenantOf(buf, t[6], t[7], vth);
    if (attacker === victim) return conn.reply('CLIENT_ERROR both keys name one tenant');
    // Aim (the harness's part, in the victim's own gate): where its value lies.
    const now = cache.now();
    victim.lock(); // --threads: the victim's index is shared (the lock is free unless a request of the victim's is running)
    let found;
    try {
      found = victim.memory.read(() => {
        const e = victim.find(vh, victim.memory.bytes(), buf, t[6], t[7], now, false);
        return e && [e.off + e.klen, e.vlen];
      });
    } finally {
      victim.unlock();
    }
    if (!found) return conn.reply('NOT_FOUND');
    const [target, vlen] = found;
    attacker.memory.bytes();
    const view = this.outOfBounds(attacker, victim, target, Math.max(1, vlen));
    if (view === null) return conn.reply('SERVER_ERROR the tenants are not neighbours');
    process.stderr.write(`vmpk-cache: test fault: ${sub} from tenant ${attacker.id} into tenant ${victim.id}\n`);
    // The bug: inside the attacker's gate, an access past the attacker's memory.
    return attacker.memory.write(() => {
      if (sub === 'oob-write') {
        view[0] = byte;
        conn.reply('OK');
      } else {
        const leaked = Buffer.from(view.subarray(0, vlen));
        conn.reply(`VALUE ${buf.toString('latin1', t[6], t[7])} 0 ${leaked.length}`);
        conn.replyBuffer(leaked);
        conn.text += '\r\nEND\r\n';
      }
    });
  }
}
