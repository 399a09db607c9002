// A fixed budget of equal chunks for buffered request and reply bytes. A
// value on its way to a client is copied (inside its tenant's gate) into
// chunks of the reply pool and the chunks return when the socket has written
// them; a value that arrives in pieces is gathered into chunks of the request
// pool. Chunks are allocated once and reused, so the memory the server holds
// for buffered data is at most the two budgets, whatever clients send, and
// none of it waits for the garbage collector. A connection that finds too few
// chunks free waits in line (first come, first served) and stops reading
// until its turn.
export class Pool {
  /**
   * @param {number} chunkSize bytes per chunk
   * @param {number} budget total bytes; at least one largest request
   */
  constructor(chunkSize, budget) {
    this.chunkSize = chunkSize;
    this.max = Math.max(1, Math.floor(budget / chunkSize));
    this.made = 0;
    /** @type {Buffer[]} */
    this.free = [];
    /** @type {Array<{ wake(): void }>} */
    this.waiters = [];
    this.scheduled = false;
  }

  /** Chunks needed for `bytes`. */
  count(bytes) {
    return Math.ceil(bytes / this.chunkSize);
  }

  get inUse() {
    return (this.made - this.free.length) * this.chunkSize;
  }

  /**
   * `count(bytes)` chunks, or null when they are not free now or others wait
   * before `who` (who then waits in line and is woken by a later give()).
   */
  take(who, bytes) {
    const n = this.count(bytes);
    if (n === 0) return [];
    if (n > this.max) throw new RangeError(`a request for ${bytes} bytes exceeds the pool of ${this.max * this.chunkSize}`);
    const first = this.waiters.length === 0 || this.waiters[0] === who;
    if (!first || this.free.length + this.max - this.made < n) {
      if (!this.waiters.includes(who)) this.waiters.push(who);
      return null;
    }
    if (this.waiters[0] === who) this.waiters.shift();
    const out = new Array(n);
    for (let i = 0; i < n; i++) {
      const c = this.free.pop();
      if (c !== undefined) out[i] = c;
      else {
        this.made++;
        out[i] = Buffer.allocUnsafeSlow(this.chunkSize);
      }
    }
    this.wakeSoon(); // the next in line may fit in what is left
    return out;
  }

  /** Returns chunks; the first waiter retries (on the next turn of the event loop). */
  give(chunks) {
    for (const c of chunks) this.free.push(c);
    this.wakeSoon();
  }

  /** A connection that closed leaves the line. */
  forget(who) {
    const i = this.waiters.indexOf(who);
    if (i >= 0) {
      this.waiters.splice(i, 1);
      if (i === 0) this.wakeSoon();
    }
  }

  wakeSoon() {
    if (this.scheduled || this.waiters.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.waiters[0]?.wake();
    });
  }
}
