// A minimal ELF reader: 64-bit little-endian x86-64 files only. Executable
// PT_LOAD segments (their bytes, file offsets and addresses) and the symbols
// of .symtab and .dynsym, for naming the function an occurrence lies in.

export interface ElfSegment {
  /** File offset of the segment's bytes. */
  offset: number;
  /** Virtual address (relative to the load base for a shared object). */
  vaddr: number;
  filesz: number;
  memsz: number;
  flags: number;
}

export interface ElfSymbol {
  name: string;
  value: number;
  size: number;
}

export interface ElfFile {
  type: number;
  /** Every PT_LOAD segment. */
  loads: ElfSegment[];
  /** PT_LOAD segments with PF_X. */
  exec: ElfSegment[];
  /** Function symbols of .symtab and .dynsym, sorted by value, sizes > 0. */
  symbols: ElfSymbol[];
  /** Whether a .symtab (not only .dynsym) was present. */
  hasSymtab: boolean;
}

export const PT_LOAD = 1;
export const PF_X = 1;
const SHT_SYMTAB = 2;
const SHT_DYNSYM = 11;
const STT_FUNC = 2;
const STT_GNU_IFUNC = 10;

export class ElfError extends Error {}

/** True when `buf` starts with the ELF magic. */
export function isElf(buf: Uint8Array): boolean {
  return buf.length >= 4 && buf[0] === 0x7f && buf[1] === 0x45 && buf[2] === 0x4c && buf[3] === 0x46;
}

function num(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfError(`ELF: ${what} too large`);
  return Number(v);
}

/** Parses an ELF64 LE file held in memory. Throws ElfError on anything else or on truncation. */
export function parseElf(data: Uint8Array): ElfFile {
  if (!isElf(data)) throw new ElfError('not an ELF file');
  if (data.length < 64) throw new ElfError('ELF: truncated header');
  if (data[4] !== 2) throw new ElfError('ELF: only 64-bit files are supported');
  if (data[5] !== 1) throw new ElfError('ELF: only little-endian files are supported');
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const check = (off: number, len: number, what: string): void => {
    if (off < 0 || len < 0 || off + len > data.length) throw new ElfError(`ELF: ${what} lies outside the file`);
  };
  const type = dv.getUint16(16, true);
  const phoff = num(dv.getBigUint64(32, true), 'e_phoff');
  const shoff = num(dv.getBigUint64(40, true), 'e_shoff');
  const phentsize = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  const shentsize = dv.getUint16(58, true);
  const shnum = dv.getUint16(60, true);

  const loads: ElfSegment[] = [];
  if (phnum) {
    if (phentsize < 56) throw new ElfError('ELF: bad e_phentsize');
    check(phoff, phnum * phentsize, 'the program header table');
    for (let i = 0; i < phnum; i++) {
      const p = phoff + i * phentsize;
      if (dv.getUint32(p, true) !== PT_LOAD) continue;
      const seg: ElfSegment = {
        flags: dv.getUint32(p + 4, true),
        offset: num(dv.getBigUint64(p + 8, true), 'p_offset'),
        vaddr: num(dv.getBigUint64(p + 16, true), 'p_vaddr'),
        filesz: num(dv.getBigUint64(p + 32, true), 'p_filesz'),
        memsz: num(dv.getBigUint64(p + 40, true), 'p_memsz'),
      };
      check(seg.offset, seg.filesz, 'a PT_LOAD segment');
      loads.push(seg);
    }
  }

  const symbols: ElfSymbol[] = [];
  let hasSymtab = false;
  if (shnum && shoff) {
    if (shentsize < 64) throw new ElfError('ELF: bad e_shentsize');
    check(shoff, shnum * shentsize, 'the section header table');
    const sh = (i: number) => {
      const p = shoff + i * shentsize;
      return {
        type: dv.getUint32(p + 4, true),
        offset: num(dv.getBigUint64(p + 24, true), 'sh_offset'),
        size: num(dv.getBigUint64(p + 32, true), 'sh_size'),
        link: dv.getUint32(p + 40, true),
        entsize: num(dv.getBigUint64(p + 56, true), 'sh_entsize'),
      };
    };
    const decoder = new TextDecoder();
    for (let i = 0; i < shnum; i++) {
      const s = sh(i);
      if (s.type !== SHT_SYMTAB && s.type !== SHT_DYNSYM) continue;
      if (s.type === SHT_SYMTAB) hasSymtab = true;
      if (s.link >= shnum) throw new ElfError('ELF: bad sh_link of a symbol table');
      const str = sh(s.link);
      check(s.offset, s.size, 'a symbol table');
      check(str.offset, str.size, 'a string table');
      const ent = s.entsize || 24;
      for (let o = s.offset; o + 24 <= s.offset + s.size; o += ent) {
        const info = data[o + 4]!;
        const stype = info & 0xf;
        if (stype !== STT_FUNC && stype !== STT_GNU_IFUNC) continue;
        const value = num(dv.getBigUint64(o + 8, true), 'st_value');
        const size = num(dv.getBigUint64(o + 16, true), 'st_size');
        if (!value || !size) continue;
        const nameOff = dv.getUint32(o, true);
        if (nameOff >= str.size) continue;
        const start = str.offset + nameOff;
        let end = start;
        while (end < str.offset + str.size && data[end] !== 0) end++;
        symbols.push({ name: decoder.decode(data.subarray(start, end)), value, size });
      }
    }
  }
  symbols.sort((a, b) => a.value - b.value || a.name.localeCompare(b.name));
  return { type, loads, exec: loads.filter((l) => l.flags & PF_X), symbols, hasSymtab };
}

/** The function symbol whose [value, value+size) holds `vaddr`, if any. */
export function symbolAt(elf: ElfFile, vaddr: number): ElfSymbol | undefined {
  const s = elf.symbols;
  let lo = 0;
  let hi = s.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (s[mid]!.value <= vaddr) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  // Symbols may overlap or alias: look back over the ones starting at or before vaddr.
  for (let i = found; i >= 0 && i > found - 64; i--) {
    const sym = s[i]!;
    if (vaddr >= sym.value && vaddr < sym.value + sym.size) return sym;
  }
  return undefined;
}

/** The virtual address that file offset `off` is loaded at, if a PT_LOAD covers it. */
export function fileOffsetToVaddr(elf: ElfFile, off: number): number | undefined {
  for (const l of elf.loads) if (off >= l.offset && off < l.offset + l.filesz) return l.vaddr + (off - l.offset);
  return undefined;
}
