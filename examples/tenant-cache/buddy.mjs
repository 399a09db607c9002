// A buddy allocator over offsets in one tenant's memory. It only keeps
// numbers (which blocks are free): the memory itself is never touched here,
// so eviction and freeing need no gate. Blocks are powers of two from
// MIN_BLOCK up to `maxBlock`; freed blocks merge with their free buddy, so
// once every item is gone the memory is whole again (LRU eviction always
// makes progress).

export const MIN_ORDER = 6; // 64-byte blocks: the smallest item footprint
export const MIN_BLOCK = 1 << MIN_ORDER;

/** The order (log2 of the block size) that fits `n` bytes. */
export function orderFor(n) {
  let order = MIN_ORDER;
  while (1 << order < n) order++;
  return order;
}

export class Buddy {
  /**
   * @param {number} size bytes to manage, a multiple of maxBlock
   * @param {number} maxBlock the largest block, a power of two
   */
  constructor(size, maxBlock) {
    this.size = size;
    this.maxOrder = orderFor(maxBlock);
    if (1 << this.maxOrder !== maxBlock || size % maxBlock !== 0) throw new RangeError('buddy: bad geometry');
    /** @type {Set<number>[]} free block offsets per order */
    this.free = [];
    this.reset();
  }

  /** Everything free again (flush_all). */
  reset() {
    this.free = Array.from({ length: this.maxOrder + 1 }, () => new Set());
    for (let off = 0; off < this.size; off += 1 << this.maxOrder) this.free[this.maxOrder].add(off);
    this.used = 0;
  }

  /** The offset of a free block of 2^order bytes, or -1 when none is free. */
  alloc(order) {
    let o = order;
    while (o <= this.maxOrder && this.free[o].size === 0) o++;
    if (o > this.maxOrder) return -1;
    const set = this.free[o];
    const off = set.values().next().value;
    set.delete(off);
    while (o > order) {
      o--;
      this.free[o].add(off + (1 << o)); // the upper half stays free
    }
    this.used += 1 << order;
    return off;
  }

  /** Returns a block from alloc(order); merges it with free buddies. */
  release(off, order) {
    this.used -= 1 << order;
    while (order < this.maxOrder) {
      const buddy = off ^ (1 << order);
      if (!this.free[order].delete(buddy)) break;
      off = Math.min(off, buddy);
      order++;
    }
    this.free[order].add(off);
  }
}
