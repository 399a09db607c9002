// The koffi declarations of src/native.ts against native/include/vmpk.h: the
// C core writes whole structs into buffers sized from src/native.ts, so they
// must agree member by member.
import { readFileSync } from 'node:fs';
import koffi from 'koffi';
import { describe, expect, it } from 'vitest';
import { C_STRUCTS } from '../src/native.js';

const header = readFileSync(new URL('../native/include/vmpk.h', import.meta.url), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');

function headerStruct(name: string): Array<[string, string]> {
  const body = new RegExp(`struct ${name}\\s*\\{([^}]*)\\}`).exec(header)?.[1];
  if (body === undefined) throw new Error(`struct ${name} not found in vmpk.h`);
  const members: Array<[string, string]> = [];
  for (const decl of body.split(';')) {
    const m = /^\s*([a-z_0-9 ]+?)\s+(\w+)\s*$/.exec(decl);
    if (m) members.push([m[2]!, m[1]!.replace(/\s+/g, ' ')]);
    else if (decl.trim() !== '') throw new Error(`cannot read the member "${decl.trim()}" of struct ${name}`);
  }
  return members;
}

describe('koffi declarations match vmpk.h', () => {
  it.each(Object.keys(C_STRUCTS) as Array<keyof typeof C_STRUCTS>)('struct %s: same members, same order, same types', (name) => {
    expect(C_STRUCTS[name].map(([n, t]) => [n, t])).toEqual(headerStruct(name));
  });

  it.each(Object.keys(C_STRUCTS) as Array<keyof typeof C_STRUCTS>)('struct %s: koffi lays it out as x86-64 C does', (name) => {
    // LP64: int 4, size_t and uint64_t 8; each member aligned to its size.
    let offset = 0;
    for (const [, type] of headerStruct(name)) {
      const size = type === 'int' ? 4 : 8;
      offset = Math.ceil(offset / size) * size + size;
    }
    const size = Math.ceil(offset / 8) * 8;
    expect(koffi.sizeof(koffi.struct(Object.fromEntries(C_STRUCTS[name])))).toBe(size);
  });
});
