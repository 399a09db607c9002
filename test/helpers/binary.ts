// A raw client for the memcached binary protocol (tests only).
import net from 'node:net';

export interface Packet {
  opcode: number;
  status: number;
  opaque: number;
  cas: bigint;
  extras: Buffer;
  key: Buffer;
  value: Buffer;
}

/** One request packet. */
export function req(opcode: number, o: { key?: string | Buffer; extras?: Buffer; value?: string | Buffer; opaque?: number; cas?: bigint } = {}): Buffer {
  const key = typeof o.key === 'string' ? Buffer.from(o.key, 'latin1') : (o.key ?? Buffer.alloc(0));
  const extras = o.extras ?? Buffer.alloc(0);
  const value = typeof o.value === 'string' ? Buffer.from(o.value, 'latin1') : (o.value ?? Buffer.alloc(0));
  const h = Buffer.alloc(24);
  h[0] = 0x80;
  h[1] = opcode;
  h.writeUInt16BE(key.length, 2);
  h[4] = extras.length;
  h.writeUInt32BE(extras.length + key.length + value.length, 8);
  h.writeUInt32BE(o.opaque ?? 0, 12);
  h.writeBigUInt64BE(o.cas ?? 0n, 16);
  return Buffer.concat([h, extras, key, value]);
}

/** Extras of set/add/replace. */
export function storeExtras(flags: number, exptime: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(flags);
  b.writeUInt32BE(exptime, 4);
  return b;
}

/** Extras of incr/decr. */
export function incrExtras(delta: bigint, initial: bigint, exptime: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeBigUInt64BE(delta);
  b.writeBigUInt64BE(initial, 8);
  b.writeUInt32BE(exptime, 16);
  return b;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

const NOOP_OPAQUE = 0xfeedf00d;

export class BinaryClient {
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  closed = false;
  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => {});
  }

  static connect(port: number): Promise<BinaryClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new BinaryClient(s)));
      s.once('error', reject);
    });
  }

  private next(): Packet | null {
    if (this.buf.length < 24) return null;
    const blen = this.buf.readUInt32BE(8);
    if (this.buf.length < 24 + blen) return null;
    const el = this.buf[4];
    const kl = this.buf.readUInt16BE(2);
    const p: Packet = {
      opcode: this.buf[1],
      status: this.buf.readUInt16BE(6),
      opaque: this.buf.readUInt32BE(12),
      cas: this.buf.readBigUInt64BE(16),
      extras: Buffer.from(this.buf.subarray(24, 24 + el)),
      key: Buffer.from(this.buf.subarray(24 + el, 24 + el + kl)),
      value: Buffer.from(this.buf.subarray(24 + el + kl, 24 + blen)),
    };
    this.buf = this.buf.subarray(24 + blen);
    return p;
  }

  /** Sends the requests and a noop; returns every response before the noop's. */
  async call(...requests: Buffer[]): Promise<Packet[]> {
    this.socket.write(Buffer.concat([...requests, req(0x0a, { opaque: NOOP_OPAQUE })]));
    const out: Packet[] = [];
    for (;;) {
      const p = this.next();
      if (p !== null) {
        if (p.opcode === 0x0a && p.opaque === NOOP_OPAQUE) return out;
        out.push(p);
        continue;
      }
      if (this.closed) throw new Error(`connection closed after ${out.length} responses`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Every complete response received so far. */
  drain(): Packet[] {
    const out: Packet[] = [];
    for (let p = this.next(); p !== null; p = this.next()) out.push(p);
    return out;
  }

  close() {
    this.socket.destroy();
  }
}

/** A response in a form to compare across servers: CAS values only as zero or not. */
export function shape(p: Packet) {
  return {
    opcode: p.opcode,
    status: p.status,
    opaque: p.opaque,
    cas: p.cas === 0n ? 0 : 'set',
    extras: p.extras.toString('hex'),
    key: p.key.toString('latin1'),
    value: p.value.length > 64 ? `${p.value.length} bytes` : p.value.toString('latin1'),
  };
}
