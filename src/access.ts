// Access strings <-> enum vmpk_access (native/include/vmpk.h). Write implies
// read, as with PKRU and page protection, so there is no write-only access.
import { describe, invalidArgument } from './errors.js';

/** A key's process-wide access. */
export type Access = 'none' | 'r' | 'rw';
/** What a gate (or a probe) asks for: a gate that grants nothing is meaningless. */
export type GateAccess = 'r' | 'rw';

export const VMPK_NONE = 0;
export const VMPK_READ = 1;
export const VMPK_RW = 3;

// Common misspellings, so the message can say what was meant.
const HINTS: Readonly<Record<string, Access>> = {
  read: 'r',
  readonly: 'r',
  ro: 'r',
  R: 'r',
  w: 'rw',
  write: 'rw',
  wr: 'rw',
  readwrite: 'rw',
  'read-write': 'rw',
  rwx: 'rw',
  RW: 'rw',
  '': 'none',
  no: 'none',
  NONE: 'none',
};

function reject(value: unknown, where: string, valid: readonly string[]): never {
  const list = valid.map((v) => `'${v}'`).join(', ');
  let hint = '';
  if (typeof value === 'string') {
    const h = HINTS[value];
    if (h !== undefined && valid.includes(h)) hint = `; did you mean '${h}'?`;
    else if (value === 'none' || value === 'NONE' || value === '') hint = "; a gate that grants nothing is meaningless: use 'r' or 'rw'";
  }
  throw invalidArgument(`${where}: access must be one of ${list}, got ${describe(value)}${hint}`);
}

/** 'none' | 'r' | 'rw' -> VMPK_NONE | VMPK_READ | VMPK_RW. */
export function parseAccess(value: unknown, where: string): number {
  if (value === 'none') return VMPK_NONE;
  if (value === 'r') return VMPK_READ;
  if (value === 'rw') return VMPK_RW;
  return reject(value, where, ['none', 'r', 'rw']);
}

/** 'r' | 'rw' -> VMPK_READ | VMPK_RW (gates and probes). */
export function parseGateAccess(value: unknown, where: string): number {
  if (value === 'rw') return VMPK_RW;
  if (value === 'r') return VMPK_READ;
  return reject(value, where, ['r', 'rw']);
}

export function accessName(value: number): Access {
  return value === VMPK_RW ? 'rw' : value === VMPK_READ ? 'r' : 'none';
}
