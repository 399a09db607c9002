// The byte scanner: every WRPKRU (0F 01 EF) and XRSTOR (0F AE /5 with a memory
// operand) at every byte offset, not only at instruction boundaries, so a
// sequence hidden in an immediate or a displacement, or one that spans two
// instructions, is found. Chunks that are adjacent in the address space are
// scanned as one stream (a sequence may span a page or two mappings); a gap
// between chunks ends the stream.

export type OccurrenceKind = 'WRPKRU' | 'XRSTOR';

/** A chunk of executable bytes at an address (a segment, a mapping, a page). */
export interface Chunk {
  address: number;
  bytes: Uint8Array;
}

/** One byte sequence found: where its first byte (the 0F) lies. */
export interface Hit {
  kind: OccurrenceKind;
  /** Address of the 0F byte. */
  address: number;
  /** Index (in the array given to scanChunks) of the chunk holding the 0F byte. */
  chunk: number;
  /** Offset of the 0F byte in that chunk. */
  offset: number;
  /** True when the sequence runs past the end of its chunk into the next one. */
  spans: boolean;
  /** XRSTOR only: the ModRM byte, and whether a REX.W prefix precedes (XRSTOR64). */
  modrm?: number;
  rexW?: boolean;
}

/** True when `modrm` after 0F AE makes XRSTOR: reg field 5, mod not 11 (0F AE E8..EF is LFENCE). */
export function isXrstorModrm(modrm: number): boolean {
  return ((modrm >> 3) & 7) === 5 && modrm >> 6 !== 3;
}

/** Scans one buffer that starts at `base`. */
export function scanBytes(bytes: Uint8Array, base = 0): Hit[] {
  return scanChunks([{ address: base, bytes }]);
}

/**
 * A view over a run of address-adjacent chunks: byte at an address, and bytes
 * around one (for the verdicts' look-behind and look-ahead).
 */
export class Stream {
  private readonly starts: number[];
  constructor(readonly chunks: Chunk[], readonly indices: number[]) {
    this.starts = chunks.map((c) => c.address);
  }
  get start(): number {
    return this.chunks[0]!.address;
  }
  get end(): number {
    const last = this.chunks[this.chunks.length - 1]!;
    return last.address + last.bytes.length;
  }
  /** The byte at `address`, or -1 outside the run. */
  byteAt(address: number): number {
    if (address < this.start || address >= this.end) return -1;
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= address) lo = mid;
      else hi = mid - 1;
    }
    const c = this.chunks[lo]!;
    return c.bytes[address - c.address] ?? -1;
  }
  /** Up to `length` bytes from `address`, clipped to the run. */
  slice(address: number, length: number): number[] {
    const out: number[] = [];
    const from = Math.max(address, this.start);
    const to = Math.min(address + length, this.end);
    for (let a = from; a < to; a++) out.push(this.byteAt(a));
    return out;
  }
}

/** Groups chunks into runs of address-adjacent ones (sorted by address). */
export function streams(chunks: Chunk[]): Stream[] {
  const order = chunks.map((_, i) => i).sort((a, b) => chunks[a]!.address - chunks[b]!.address);
  const runs: Stream[] = [];
  let cur: Chunk[] = [];
  let idx: number[] = [];
  let next = NaN;
  for (const i of order) {
    const c = chunks[i]!;
    if (c.bytes.length === 0) continue;
    if (cur.length && c.address !== next) {
      runs.push(new Stream(cur, idx));
      cur = [];
      idx = [];
    }
    cur.push(c);
    idx.push(i);
    next = c.address + c.bytes.length;
  }
  if (cur.length) runs.push(new Stream(cur, idx));
  return runs;
}

/** Scans chunks; a sequence is found across two chunks only when they are adjacent. */
export function scanChunks(chunks: Chunk[]): Hit[] {
  const hits: Hit[] = [];
  for (const run of streams(chunks)) scanStream(run, hits);
  return hits;
}

function scanStream(run: Stream, hits: Hit[]): void {
  const { chunks, indices } = run;
  for (let k = 0; k < chunks.length; k++) {
    const c = chunks[k]!;
    const b = c.bytes;
    const n = b.length;
    // The bytes after position i, reading on into the next chunks of the run
    // (the 2-byte carry across a chunk boundary, seen from its start).
    const at = (i: number): number => (i < n ? b[i]! : run.byteAt(c.address + i));
    const buf = Buffer.from(b.buffer, b.byteOffset, n);
    for (let i = buf.indexOf(0x0f); i !== -1; i = buf.indexOf(0x0f, i + 1)) {
      const b1 = at(i + 1);
      const b2 = at(i + 2);
      if (b2 < 0) continue;
      const spans = i + 2 >= n;
      if (b1 === 0x01 && b2 === 0xef) {
        hits.push({ kind: 'WRPKRU', address: c.address + i, chunk: indices[k]!, offset: i, spans });
      } else if (b1 === 0xae && isXrstorModrm(b2)) {
        const prev = i > 0 ? b[i - 1]! : run.byteAt(c.address - 1);
        const rexW = prev >= 0x48 && prev <= 0x4f;
        hits.push({ kind: 'XRSTOR', address: c.address + i, chunk: indices[k]!, offset: i, spans, modrm: b2, rexW });
      }
    }
  }
}
