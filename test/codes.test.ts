// src/codes.ts against native/include/vmpk.h: every enum value, flag and limit
// of the header has its twin in codes.ts with the same value, and codes.ts has
// nothing the header lacks.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { VMPK_NONE, VMPK_READ, VMPK_RW } from '../src/access.js';
import * as codes from '../src/codes.js';

const header = readFileSync(new URL('../native/include/vmpk.h', import.meta.url), 'utf8');

function enumOf(name: string): Map<string, number> {
  const body = new RegExp(`enum ${name}\\s*\\{([^}]*)\\}`).exec(header)?.[1];
  if (body === undefined) throw new Error(`vmpk.h has no enum ${name}`);
  const out = new Map<string, number>();
  for (const m of body.replace(/\/\*[\s\S]*?\*\//g, '').matchAll(/VMPK_(\w+)\s*=\s*(-?\d+)/g)) out.set(m[1]!, Number(m[2]));
  return out;
}

// A #define's value: an integer, hex, or (size_t)1 << n.
function define(name: string): number {
  const m = new RegExp(`^#define VMPK_${name}\\s+(.+?)\\s*(?:/\\*.*)?$`, 'm').exec(header);
  if (!m) throw new Error(`vmpk.h has no VMPK_${name}`);
  const v = m[1]!.trim();
  const shift = /^\(\(size_t\)1 << (\d+)\)$/.exec(v);
  if (shift) return 2 ** Number(shift[1]);
  if (/^(0x[0-9a-fA-F]+|\d+)$/.test(v)) return Number(v);
  throw new Error(`VMPK_${name}: cannot read ${v}`);
}

describe('src/codes.ts matches vmpk.h', () => {
  it('has every error code of enum vmpk_error, and only those', () => {
    const fromHeader = [...enumOf('vmpk_error')].filter(([k]) => k.startsWith('E_'));
    expect(fromHeader.length).toBe(14);
    for (const [k, v] of fromHeader) expect([k, (codes as Record<string, number>)[k]]).toEqual([k, v]);
    const ours = Object.keys(codes).filter((k) => k.startsWith('E_')).sort();
    expect(ours).toEqual(fromHeader.map(([k]) => k).sort());
  });

  it('has the backend kinds of enum vmpk_backend', () => {
    const b = enumOf('vmpk_backend');
    expect([...b].sort()).toEqual([
      ['BACKEND_AUTO', codes.BACKEND_AUTO],
      ['BACKEND_MPROTECT', codes.BACKEND_MPROTECT],
      ['BACKEND_PKU', codes.BACKEND_PKU],
    ]);
  });

  it('src/access.ts has enum vmpk_access', () => {
    expect([...enumOf('vmpk_access')].sort()).toEqual([
      ['NONE', VMPK_NONE],
      ['READ', VMPK_READ],
      ['RW', VMPK_RW],
    ]);
  });

  it('has the key flag and the limits', () => {
    expect(codes.KEY_EXEC).toBe(define('KEY_EXEC'));
    expect(codes.MAX_GATE_DEPTH).toBe(define('MAX_GATE_DEPTH'));
    expect(codes.MAX_RUNTIMES).toBe(define('MAX_RUNTIMES'));
    expect(codes.MAX_NAME_BYTES).toBe(define('MAX_NAME'));
    expect(codes.MAX_WINDOW_SIZE).toBe(define('MAX_WINDOW_SIZE'));
    expect(codes.MAX_KEYS).toBe(define('MAX_KEYS'));
  });

  it('every VMPK_MAX_ limit of the header is in codes.ts', () => {
    const limits = [...header.matchAll(/^#define VMPK_MAX_(\w+)/gm)].map((m) => m[1]!).sort();
    expect(limits).toEqual(['GATE_DEPTH', 'KEYS', 'NAME', 'RUNTIMES', 'WINDOW_SIZE']);
  });
});
