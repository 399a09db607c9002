// Baselines for `vmpk inspect`: findings a user has reviewed and accepts, per
// binary. A binary is named by its ELF build id (NT_GNU_BUILD_ID), so a
// baseline written for one node build accepts nothing in another one.
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import type { Occurrence } from './inspect/index.js';

export interface BaselineEntry {
  /** The module's NT_GNU_BUILD_ID, lower-case hex. */
  buildId: string;
  /** Where it was seen (informational: the build id is what matches). */
  module: string;
  /** The file offset of the byte sequence. */
  offset: number;
  kind: Occurrence['kind'];
  /** Why it is accepted, in words. */
  note?: string;
}

export interface Baseline {
  vmpkInspectBaseline: 1;
  entries: BaselineEntry[];
}

function readAt(fd: number, offset: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  const n = readSync(fd, b, 0, length, offset);
  return b.subarray(0, n);
}

/** The ELF file's GNU build id in hex, or null (no note, not a 64-bit little-endian ELF, unreadable). */
export function buildId(path: string): string | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null;
  }
  try {
    const h = readAt(fd, 0, 64);
    if (h.length < 64 || h.readUInt32BE(0) !== 0x7f454c46 || h[4] !== 2 || h[5] !== 1) return null;
    const phoff = Number(h.readBigUInt64LE(32));
    const phentsize = h.readUInt16LE(54);
    const phnum = h.readUInt16LE(56);
    const ph = readAt(fd, phoff, phentsize * phnum);
    for (let i = 0; i + 56 <= ph.length && i < phnum * phentsize; i += phentsize) {
      if (ph.readUInt32LE(i) !== 4) continue; // PT_NOTE
      const off = Number(ph.readBigUInt64LE(i + 8));
      const size = Math.min(Number(ph.readBigUInt64LE(i + 32)), 1 << 16);
      const notes = readAt(fd, off, size);
      for (let p = 0; p + 12 <= notes.length; ) {
        const namesz = notes.readUInt32LE(p);
        const descsz = notes.readUInt32LE(p + 4);
        const type = notes.readUInt32LE(p + 8);
        const name = notes.subarray(p + 12, p + 12 + namesz).toString('latin1');
        const desc = p + 12 + ((namesz + 3) & ~3);
        if (type === 3 && name === 'GNU\0') return notes.subarray(desc, desc + descsz).toString('hex'); // NT_GNU_BUILD_ID
        p = desc + ((descsz + 3) & ~3);
      }
    }
    return null;
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

export function readBaseline(path: string): Baseline {
  const b = JSON.parse(readFileSync(path, 'utf8')) as Partial<Baseline>;
  if (b.vmpkInspectBaseline !== 1 || !Array.isArray(b.entries)) {
    throw new Error('not a vmpk inspect baseline (written by `vmpk inspect --write-baseline FILE`)');
  }
  return b as Baseline;
}

/** A function telling whether an occurrence is in the baseline (build ids read once per module). */
export function matcher(baseline: Baseline): (o: Occurrence) => BaselineEntry | undefined {
  const ids = new Map<string, string | null>();
  const idOf = (module: string) => {
    if (!ids.has(module)) ids.set(module, buildId(module));
    return ids.get(module)!;
  };
  return (o) => {
    const id = idOf(o.module);
    if (id === null) return undefined;
    return baseline.entries.find((e) => e.buildId === id && e.offset === o.offset && e.kind === o.kind);
  };
}

/** A baseline accepting `unsafe` (occurrences in modules without a build id cannot be accepted). */
export function makeBaseline(unsafe: Occurrence[]): { baseline: Baseline; refused: Occurrence[] } {
  const entries: BaselineEntry[] = [];
  const refused: Occurrence[] = [];
  for (const o of unsafe) {
    const id = buildId(o.module);
    if (id === null) refused.push(o);
    else entries.push({ buildId: id, module: o.module, offset: o.offset, kind: o.kind, note: `accepted by vmpk inspect --write-baseline: ${o.reason}` });
  }
  return { baseline: { vmpkInspectBaseline: 1, entries }, refused };
}
