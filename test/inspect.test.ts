// The inspector: byte scanner, ELF reader, verdicts and the running process.
import { execFileSync } from 'node:child_process';
import { closeSync, copyFileSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { inspectChunks, inspectFile, inspectProcess, isXrstorModrm, parseElf, parseMaps, scanBytes, scanChunks } from '../src/inspect/index.js';
import { openRuntime } from './helpers/vmpk.js';

const fixtures = fileURLToPath(new URL('./fixtures/inspect/', import.meta.url));
const hex = (s: string) => Uint8Array.from(s.trim().split(/\s+/).map((b) => parseInt(b, 16)));
const found = (s: string) => scanBytes(hex(s)).map((h) => [h.kind, h.offset]);

describe('scanner', () => {
  it('finds WRPKRU spanning two instructions (mov eax, 0x0f000000; add edi, ebp)', () => {
    expect(found('90 b8 00 00 00 0f 01 ef c3')).toEqual([['WRPKRU', 5]]);
  });

  it('finds WRPKRU inside an immediate and inside a displacement', () => {
    expect(found('b8 0f 01 ef 00 c3')).toEqual([['WRPKRU', 1]]); // mov eax, 0x00ef010f
    expect(found('8b 80 0f 01 ef 00 c3')).toEqual([['WRPKRU', 2]]); // mov eax, [rax+0x00ef010f]
    expect(found('48 b8 11 0f ae 2f 22 33 44 55')).toEqual([['XRSTOR', 3]]); // movabs rax, imm64
  });

  it('finds a plain WRPKRU, and overlapping candidates at every offset', () => {
    expect(found('0f 01 ef')).toEqual([['WRPKRU', 0]]);
    expect(found('0f 0f 01 ef 0f 01 ef')).toEqual([['WRPKRU', 1], ['WRPKRU', 4]]);
  });

  it('finds XRSTOR with a memory operand, not LFENCE or other 0F AE forms', () => {
    expect(found('0f ae 2f')).toEqual([['XRSTOR', 0]]); // xrstor [rdi]
    expect(found('0f ae 6c 24 40')).toEqual([['XRSTOR', 0]]); // xrstor [rsp+0x40]
    expect(found('0f ae e8')).toEqual([]); // lfence
    expect(found('0f ae 27 0f ae 64 24 40 0f ae f0 0f ae f8')).toEqual([]); // xsave, xsave, mfence, sfence
    for (let m = 0; m < 256; m++) {
      const expected = ((m >> 3) & 7) === 5 && m >> 6 !== 3;
      expect(isXrstorModrm(m)).toBe(expected);
      expect(scanBytes(Uint8Array.of(0x0f, 0xae, m)).length).toBe(expected ? 1 : 0);
    }
  });

  it('marks XRSTOR64 (REX.W prefix)', () => {
    const [h] = scanBytes(hex('48 0f ae 2f'));
    expect(h).toMatchObject({ kind: 'XRSTOR', offset: 1, rexW: true, modrm: 0x2f });
    expect(scanBytes(hex('90 0f ae 2f'))[0]!.rexW).toBe(false);
  });

  it('finds nothing in plain code', () => {
    // push rbp; mov rbp, rsp; sub rsp, 16; mov [rbp-4], edi; mov eax, [rbp-4];
    // imul eax, eax; movzx eax, al; jne +0; add edi, ebp; leave; ret
    expect(found('55 48 89 e5 48 83 ec 10 89 7d fc 8b 45 fc 0f af c0 0f b6 c0 0f 85 00 00 00 00 01 ef c9 c3')).toEqual([]);
    expect(found('')).toEqual([]);
    expect(found('0f')).toEqual([]);
    expect(found('0f 01')).toEqual([]);
  });

  it('finds a sequence split across a page boundary, at every split point', () => {
    for (const cut of [1, 2]) {
      const page = new Uint8Array(4096).fill(0x90);
      const seq = [0x0f, 0x01, 0xef];
      page.set(seq.slice(0, cut), 4096 - cut);
      const next = new Uint8Array(4096).fill(0x90);
      next.set(seq.slice(cut), 0);
      const hits = scanChunks([
        { address: 0x10000, bytes: page },
        { address: 0x11000, bytes: next },
      ]);
      expect(hits).toEqual([{ kind: 'WRPKRU', address: 0x11000 - cut, chunk: 0, offset: 4096 - cut, spans: true }]);
    }
    // XRSTOR split 0F | AE 2F, chunks given out of order.
    const hits = scanChunks([
      { address: 0x2001, bytes: hex('ae 2f') },
      { address: 0x2000, bytes: hex('0f') },
    ]);
    expect(hits).toMatchObject([{ kind: 'XRSTOR', address: 0x2000, chunk: 1, spans: true }]);
    // A one-byte chunk in the middle: 0F | 01 | EF.
    expect(scanChunks([{ address: 0, bytes: hex('0f') }, { address: 1, bytes: hex('01') }, { address: 2, bytes: hex('ef') }])).toHaveLength(1);
  });

  it('finds a sequence across two adjacent mappings, not across non-adjacent ones', () => {
    const a = { address: 0x7f0000000000, bytes: hex('90 90 0f 01'), module: '/lib/a.so', offset: 0x1000 };
    const b = { address: 0x7f0000000004, bytes: hex('ef 90'), module: '[anon]', offset: 0 };
    const r = inspectChunks([a, b]);
    expect(r.occurrences).toEqual([
      expect.objectContaining({ module: '/lib/a.so', offset: 0x1002, address: 0x7f0000000002, kind: 'WRPKRU', spans: true, verdict: 'unsafe' }),
    ]);
    expect(r.counts).toEqual({ 'vmpk-gate': 0, 'known-wrapper': 0, unsafe: 1 });
    const gap = inspectChunks([a, { ...b, address: 0x7f0000001000 }]);
    expect(gap.occurrences).toEqual([]);
    expect(gap.bytes).toBe(6);
  });
});

describe('verdicts', () => {
  it('vmpk-gate only for libvmpk*.so with RDPKRU shortly after', () => {
    const gate = hex('0f 01 ef 0f 01 ee 39 c6 0f 85 00 00 00 00');
    const v = (module: string, bytes: Uint8Array) => inspectChunks([{ address: 0x1000, bytes, module, offset: 0 }]).occurrences[0]!.verdict;
    expect(v('/x/native/build/libvmpk.so', gate)).toBe('vmpk-gate');
    expect(v('/x/libother.so', gate)).toBe('unsafe');
    expect(v('/x/native/build/libvmpk.so', hex('0f 01 ef c3 90 90'))).toBe('unsafe');
    const far = new Uint8Array(40).fill(0x90);
    far.set([0x0f, 0x01, 0xef]);
    far.set([0x0f, 0x01, 0xee], 3 + 9); // 9 bytes later: outside the window of 8
    expect(v('/x/libvmpk.so', far)).toBe('unsafe');
  });

  it('ld.so XRSTOR with a fixed mask without the PKRU bit is a known wrapper; with bit 9 it is not', () => {
    const v = (module: string, bytes: Uint8Array) => inspectChunks([{ address: 0, bytes, module, offset: 0 }]).occurrences[0]!.verdict;
    const tramp = hex('b8 ee 00 00 00 31 d2 0f ae 6c 24 40');
    expect(v('/lib64/ld-linux-x86-64.so.2', tramp)).toBe('known-wrapper');
    expect(v('/usr/lib/libz.so.1', tramp)).toBe('unsafe');
    expect(v('/lib64/ld-linux-x86-64.so.2', hex('b8 ee 02 00 00 31 d2 0f ae 6c 24 40'))).toBe('unsafe');
    expect(v('/lib64/ld-linux-x86-64.so.2', hex('90 90 90 90 90 90 90 0f ae 6c 24 40'))).toBe('unsafe');
  });
});

describe('ELF files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmpk-inspect-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let cc = true;
  try {
    execFileSync('cc', ['--version'], { stdio: 'ignore' });
  } catch {
    cc = false;
  }

  it.skipIf(!cc)('a shared object built with cc: module, file offset, symbol and verdict', () => {
    const so = join(dir, 'libgadgets.so');
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', so, join(fixtures, 'gadgets.c')]);
    const data = readFileSync(so);
    const r = inspectFile(so);
    const bySym = Object.fromEntries(r.occurrences.map((o) => [o.symbol, o]));
    expect(Object.keys(bySym).sort()).toEqual(['checked', 'hidden', 'restore', 'unrelated']);
    for (const o of r.occurrences) {
      expect(o.module).toBe(so);
      expect(data[o.offset]).toBe(0x0f);
      expect(data[o.offset + 1]).toBe(o.kind === 'WRPKRU' ? 0x01 : 0xae);
      expect(o.verdict).toBe('unsafe');
    }
    expect(bySym.restore!.kind).toBe('XRSTOR');
    expect(data[bySym.hidden!.offset - 1]).toBe(0xb8);
    expect(r.counts).toEqual({ 'vmpk-gate': 0, 'known-wrapper': 0, unsafe: 4 });

    // The same code named like vmpk's library: only the checked WRPKRU is a gate.
    const fake = join(dir, 'libvmpk.so');
    copyFileSync(so, fake);
    const f = inspectFile(fake);
    expect(Object.fromEntries(f.occurrences.map((o) => [o.symbol, o.verdict]))).toEqual({
      checked: 'vmpk-gate',
      unrelated: 'unsafe',
      hidden: 'unsafe',
      restore: 'unsafe',
    });
  });

  it('a minimal hand-written ELF: one PF_X segment, file offsets', () => {
    const code = hex('90 b8 00 00 00 0f 01 ef c3');
    const buf = Buffer.alloc(64 + 56 + code.length);
    buf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
    buf.writeUInt16LE(3, 16); // ET_DYN
    buf.writeUInt16LE(62, 18); // x86-64
    buf.writeBigUInt64LE(64n, 32); // e_phoff
    buf.writeUInt16LE(64, 52);
    buf.writeUInt16LE(56, 54);
    buf.writeUInt16LE(1, 56);
    buf.writeUInt16LE(64, 58);
    buf.writeUInt32LE(1, 64); // PT_LOAD
    buf.writeUInt32LE(5, 68); // R+X
    buf.writeBigUInt64LE(120n, 72); // p_offset
    buf.writeBigUInt64LE(0x400078n, 80); // p_vaddr
    buf.writeBigUInt64LE(BigInt(code.length), 96);
    buf.writeBigUInt64LE(BigInt(code.length), 104);
    buf.set(code, 120);
    const path = join(dir, 'tiny.elf');
    writeFileSync(path, buf);
    expect(parseElf(buf).exec).toEqual([{ offset: 120, vaddr: 0x400078, filesz: 9, memsz: 9, flags: 5 }]);
    expect(inspectFile(path).occurrences).toEqual([
      { module: path, offset: 125, address: 0x40007d, kind: 'WRPKRU', spans: false, verdict: 'unsafe', reason: 'WRPKRU outside any known gate or wrapper' },
    ]);
    // 32-bit, big-endian, truncated and non-ELF input is refused.
    expect(() => parseElf(Buffer.from([0x7f, 0x45, 0x4c, 0x46, 1, 1]))).toThrow(/truncated|64-bit/);
    const be = Buffer.from(buf);
    be[5] = 2;
    expect(() => parseElf(be)).toThrow(/little-endian/);
    expect(() => parseElf(buf.subarray(0, 100))).toThrow(/outside the file/);
    expect(() => parseElf(Buffer.from('hello'))).toThrow(/not an ELF/);
  });

  it("glibc's pkey_set is a known wrapper where libc has one", () => {
    const maps = parseMaps(readFileSync('/proc/self/maps', 'utf8'));
    const libc = maps.find((m) => /\/libc\.so\.6$/.test(m.name))?.name;
    expect(libc).toBeDefined();
    const r = inspectFile(libc!);
    const hasPkeySet = parseElf(readFileSync(libc!)).symbols.some((s) => s.name === 'pkey_set');
    if (hasPkeySet) {
      expect(r.occurrences.filter((o) => o.symbol === 'pkey_set')).toEqual([
        expect.objectContaining({ kind: 'WRPKRU', verdict: 'known-wrapper' }),
      ]);
    }
    expect(r.occurrences.filter((o) => o.kind === 'WRPKRU' && o.symbol !== 'pkey_set')).toEqual([]);
  });
});

describe('inspectProcess()', () => {
  it('parses /proc/self/maps lines', () => {
    expect(parseMaps('7f00-7f10 r-xp 00001000 fe:00 338944                     /usr/lib/ld.so\n7f10-7f20 rwxp 00000000 00:00 0 \nbad line')).toEqual([
      { start: 0x7f00, end: 0x7f10, perms: 'r-xp', offset: 0x1000, inode: 338944, name: '/usr/lib/ld.so' },
      { start: 0x7f10, end: 0x7f20, perms: 'rwxp', offset: 0, inode: 0, name: '' },
    ]);
  });

  it("finds libc's pkey_set and libvmpk's gates in this process, skipping what it cannot read", () => {
    openRuntime(); // loads libvmpk.so
    const maps = parseMaps(readFileSync('/proc/self/maps', 'utf8'));
    const lib = maps.find((m) => /libvmpk[^/]*\.so/.test(m.name))?.name;
    expect(lib).toBeDefined();
    const r = inspectProcess();
    expect(r.bytes).toBeGreaterThan(1 << 20);
    for (const s of r.skipped) expect(s.reason).not.toBe('');

    const fromFile = inspectFile(lib!).occurrences;
    const inProc = r.occurrences.filter((o) => o.module === lib);
    expect(inProc.map((o) => [o.offset, o.kind, o.verdict, o.symbol])).toEqual(fromFile.map((o) => [o.offset, o.kind, o.verdict, o.symbol]));
    // The real build has checked gates; a stub build (VMPK_PKRU_STUB) has no WRPKRU at all.
    for (const o of inProc) expect(o.verdict).toBe('vmpk-gate');

    const libc = maps.find((m) => /\/libc\.so\.6$/.test(m.name))!.name;
    if (inspectFile(libc).occurrences.some((o) => o.symbol === 'pkey_set')) {
      const pk = r.occurrences.filter((o) => o.module === libc && o.symbol === 'pkey_set');
      expect(pk).toHaveLength(1);
      expect(pk[0]).toMatchObject({ kind: 'WRPKRU', verdict: 'known-wrapper' });
    }
    // Each occurrence's bytes are really there in memory.
    const fd = openSync('/proc/self/mem', 'r');
    try {
      for (const o of r.occurrences.filter((x) => !x.spans)) {
        const b = Buffer.alloc(2);
        readSync(fd, b, 0, 2, o.address);
        expect(b[0]).toBe(0x0f);
      }
    } finally {
      closeSync(fd);
    }
  });
});

describe('runtime.inspect()', () => {
  it("scans the process like inspectProcess(): libvmpk's WRPKRUs are all vmpk gates", () => {
    const rt = openRuntime();
    const r = rt.inspect();
    const ours = r.occurrences.filter((o) => /libvmpk[^/]*\.so$/.test(o.module));
    for (const o of ours) expect(o.verdict).toBe('vmpk-gate');
    expect(r.counts['vmpk-gate']).toBe(r.occurrences.filter((o) => o.verdict === 'vmpk-gate').length);
    rt.close();
    expect(() => rt.inspect()).toThrow(expect.objectContaining({ code: 'RUNTIME_CLOSED' }));
  });
});
