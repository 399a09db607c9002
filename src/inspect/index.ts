// The inspector: WRPKRU and XRSTOR byte sequences in ELF files and in the
// running process's executable memory, each with a verdict. See docs/security.md.
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { basename } from 'node:path';
import { type ElfFile, fileOffsetToVaddr, isElf, parseElf, symbolAt } from './elf.js';
import { type Mapping, isFileBacked, parseMaps } from './maps.js';
import { type Chunk, type Hit, type OccurrenceKind, type Stream, scanChunks, streams } from './scan.js';

export { parseElf, symbolAt, isElf, ElfError, type ElfFile, type ElfSegment, type ElfSymbol } from './elf.js';
export { parseMaps, type Mapping } from './maps.js';
export { scanBytes, scanChunks, isXrstorModrm, type Chunk, type Hit, type OccurrenceKind } from './scan.js';

/**
 * vmpk-gate: a WRPKRU in vmpk's own libvmpk*.so followed within
 * GATE_WINDOW bytes by RDPKRU (the check of invariant 5).
 * known-wrapper: a recognised system-library routine (glibc's pkey_set; the
 * XRSTOR of ld.so's _dl_runtime_resolve_xsave*). Not harmless: a hijacked
 * control flow can still jump onto it with chosen registers.
 * unsafe: anything else.
 */
export type Verdict = 'vmpk-gate' | 'known-wrapper' | 'unsafe';

export interface Occurrence {
  /** File path or mapping name ('[anon]' for anonymous memory). */
  module: string;
  /** Offset in the file (file-backed), or from the mapping's start (anonymous). */
  offset: number;
  /** Virtual address: in the process, or the ELF's p_vaddr-based one for files. */
  address: number;
  kind: OccurrenceKind;
  /** XRSTOR with a REX.W prefix (XRSTOR64). */
  rexW?: boolean;
  /** The function symbol holding it, where the file has one. */
  symbol?: string;
  /** The sequence continues into the next chunk (a page, a segment or a mapping). */
  spans: boolean;
  verdict: Verdict;
  /** Why this verdict, in words. */
  reason: string;
}

export interface Skipped {
  module: string;
  address?: number;
  reason: string;
}

export interface InspectReport {
  occurrences: Occurrence[];
  skipped: Skipped[];
  /** Executable bytes scanned. */
  bytes: number;
  counts: Record<Verdict, number>;
}

/** How far after a WRPKRU's end the RDPKRU of a vmpk gate may start. */
export const GATE_WINDOW = 8;

/** A chunk with what the verdicts need to know about where it came from. */
export interface SourceChunk extends Chunk {
  /** File path or mapping name. */
  module: string;
  /** Offset reported for the chunk's first byte (a file offset, or from a mapping's start). */
  offset: number;
  /** The parsed ELF of the module, for symbols. */
  elf?: ElfFile;
  /** The ELF virtual address of the chunk's first byte (for symbol lookup). */
  vaddr?: number;
}

function isVmpkLibrary(module: string): boolean {
  return /^libvmpk[^/]*\.so(\.|$)/.test(basename(module));
}
function isLibc(module: string): boolean {
  return /^libc\.so\.6$|^libc-2\.\d+\.so$/.test(basename(module));
}
function isLdso(module: string): boolean {
  return /^ld-linux[^/]*\.so/.test(basename(module));
}

function indexOfSeq(hay: number[], needle: number[]): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** The verdict rules (documented in docs/security.md). */
export function classify(
  hit: Hit,
  src: SourceChunk,
  run: Stream,
  symbol: string | undefined,
  /** Where the function holding the hit ends (in the run's addresses), when the file names it. */
  symbolEnd?: number,
): { verdict: Verdict; reason: string } {
  if (hit.kind === 'WRPKRU') {
    if (isVmpkLibrary(src.module)) {
      const after = run.slice(hit.address + 3, GATE_WINDOW + 3);
      const at = indexOfSeq(after, [0x0f, 0x01, 0xee]);
      // The check must lie in the same function: a WRPKRU; RET followed by the
      // next function's RDPKRU is no gate.
      const inside = symbolEnd === undefined || hit.address + 3 + at + 3 <= symbolEnd;
      if (at >= 0 && at < GATE_WINDOW && inside) return { verdict: 'vmpk-gate', reason: `libvmpk WRPKRU checked by RDPKRU ${at} bytes later` };
      return { verdict: 'unsafe', reason: `in libvmpk but no RDPKRU within ${GATE_WINDOW} bytes in the same function` };
    }
    if (isLibc(src.module) && symbol === 'pkey_set') return { verdict: 'known-wrapper', reason: 'glibc pkey_set' };
    return { verdict: 'unsafe', reason: symbol ? `WRPKRU in ${symbol}` : 'WRPKRU outside any known gate or wrapper' };
  }
  if (isLdso(src.module)) {
    if (symbol?.startsWith('_dl_runtime_resolve_')) return { verdict: 'known-wrapper', reason: `ld.so ${symbol}` };
    // ld.so is stripped of .symtab on most distributions: recognise the
    // lazy-binding trampoline's shape instead: `mov eax, imm32; xor edx, edx;
    // xrstor [mem]` with a fixed mask lacking bit 9 (PKRU).
    const before = run.slice(hit.address - 7, 7);
    if (before.length === 7 && before[0] === 0xb8 && before[5] === 0x31 && before[6] === 0xd2) {
      const mask = before[1]! | (before[2]! << 8) | (before[3]! << 16) | (before[4]! << 24);
      if (!(mask & 0x200))
        return { verdict: 'known-wrapper', reason: `ld.so lazy-binding trampoline (XRSTOR mask 0x${(mask >>> 0).toString(16)}, no PKRU bit)` };
    }
  }
  return { verdict: 'unsafe', reason: symbol ? `XRSTOR in ${symbol}` : 'XRSTOR outside any known wrapper' };
}

function emptyCounts(): Record<Verdict, number> {
  return { 'vmpk-gate': 0, 'known-wrapper': 0, unsafe: 0 };
}

/** Scans chunks with their provenance (adjacent ones as one stream) and gives each hit a verdict. */
export function inspectChunks(chunks: SourceChunk[]): InspectReport {
  const report: InspectReport = { occurrences: [], skipped: [], bytes: 0, counts: emptyCounts() };
  for (const c of chunks) report.bytes += c.bytes.length;
  const runs = streams(chunks);
  const runOf = new Map<number, Stream>();
  for (const r of runs) for (const i of r.indices) runOf.set(i, r);
  for (const hit of scanChunks(chunks)) {
    const src = chunks[hit.chunk]!;
    const run = runOf.get(hit.chunk)!;
    const va = src.vaddr !== undefined ? src.vaddr + hit.offset : undefined;
    const symbol = src.elf && va !== undefined ? symbolAt(src.elf, va) : undefined;
    const sym = symbol?.name;
    const end = symbol && va !== undefined ? hit.address + (symbol.value + symbol.size - va) : undefined;
    const { verdict, reason } = classify(hit, src, run, sym, end);
    const occ: Occurrence = { module: src.module, offset: src.offset + hit.offset, address: hit.address, kind: hit.kind, spans: hit.spans, verdict, reason };
    if (hit.rexW) occ.rexW = true;
    if (sym) occ.symbol = sym;
    report.occurrences.push(occ);
    report.counts[verdict]++;
  }
  return report;
}

/** The executable segments of an ELF file as chunks (addresses are p_vaddr). */
export function elfChunks(path: string, data: Uint8Array, elf = parseElf(data)): SourceChunk[] {
  return elf.exec.map((s) => ({
    address: s.vaddr,
    bytes: data.subarray(s.offset, s.offset + s.filesz),
    module: path,
    offset: s.offset,
    elf,
    vaddr: s.vaddr,
  }));
}

/** Inspects the executable segments of one ELF file. Throws on unreadable or non-ELF64 files. */
export function inspectFile(path: string): InspectReport {
  const data = readFileSync(path);
  return inspectChunks(elfChunks(path, data));
}

export interface InspectProcessOptions {
  /** Defaults to /proc/self: the maps and memory read. */
  proc?: string;
}

/**
 * Scans the running process's executable mappings: file-backed ones from
 * their files at the mapping's offset, anonymous ones (JIT code, [vdso])
 * from /proc/self/mem. Mappings that cannot be read are listed in `skipped`.
 * The memory may change while it is read (a JIT, another thread): this is a
 * snapshot, not a guarantee.
 */
export function inspectProcess(options: InspectProcessOptions = {}): InspectReport {
  const proc = options.proc ?? '/proc/self';
  const maps = parseMaps(readFileSync(`${proc}/maps`, 'utf8')).filter((m) => m.perms[2] === 'x');
  const skipped: Skipped[] = [];
  const elfs = new Map<string, { data: Buffer; elf?: ElfFile } | Error>();
  const chunks: SourceChunk[] = [];
  let mem: number | undefined;
  const readMem = (m: Mapping): Buffer => {
    mem ??= openSync(`${proc}/mem`, 'r');
    const len = m.end - m.start;
    const buf = Buffer.alloc(len);
    let got = 0;
    while (got < len) {
      const n = readSync(mem, buf, got, len - got, m.start + got);
      if (n <= 0) break;
      got += n;
    }
    if (got < len) throw new Error(`short read (${got} of ${len} bytes)`);
    return buf;
  };
  try {
    for (const m of maps) {
      const module = m.name || '[anon]';
      try {
        if (!Number.isSafeInteger(m.end)) throw new Error('address beyond 2^53 (the kernel\'s [vsyscall] page)');
        if (isFileBacked(m) && !m.name.endsWith(' (deleted)')) {
          let f = elfs.get(m.name);
          if (!f) {
            try {
              const data = readFileSync(m.name);
              f = { data, elf: isElf(data) ? parseElf(data) : undefined };
            } catch (err) {
              f = err as Error;
            }
            elfs.set(m.name, f);
          }
          if (f instanceof Error) throw f;
          const bytes = f.data.subarray(m.offset, Math.min(m.offset + (m.end - m.start), f.data.length));
          const vaddr = f.elf ? fileOffsetToVaddr(f.elf, m.offset) : undefined;
          chunks.push({ address: m.start, bytes, module, offset: m.offset, elf: f.elf, vaddr });
        } else {
          chunks.push({ address: m.start, bytes: readMem(m), module, offset: 0 });
        }
      } catch (err) {
        skipped.push({ module, address: m.start, reason: (err as Error).message });
      }
    }
  } finally {
    if (mem !== undefined) closeSync(mem);
  }
  const report = inspectChunks(chunks);
  report.skipped = skipped;
  return report;
}
