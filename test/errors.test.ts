// The one table from the C core's codes (enum vmpk_error) to VmpkError codes,
// checked against the header itself so the two cannot drift apart.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NATIVE_CODES, VmpkError, nativeError } from '../src/errors.js';

const header = readFileSync(new URL('../native/include/vmpk.h', import.meta.url), 'utf8');
const enumBody = /enum vmpk_error\s*\{([^}]*)\}/.exec(header)?.[1] ?? '';
const headerCodes = [...enumBody.matchAll(/VMPK_(E_\w+)\s*=\s*(-\d+)/g)].map((m) => [m[1]!, Number(m[2])] as const);

const expected: Record<string, string> = {
  E_INVALID: 'INVALID_ARGUMENT',
  E_STALE: 'KEY_DESTROYED',
  E_NOMEM: 'OUT_OF_MEMORY',
  E_UNSUPPORTED: 'UNSUPPORTED_BACKEND',
  E_KEYS_PINNED: 'KEYS_EXHAUSTED',
  E_BUSY: 'KEY_BUSY',
  E_GATE_ORDER: 'GATE_ORDER',
  E_WINDOW_FULL: 'WINDOW_FULL',
  E_NOT_REGION: 'NOT_A_REGION',
  E_GATE_DEPTH: 'GATE_DEPTH',
  E_NO_HW_KEYS: 'NO_HARDWARE_KEYS',
  E_SYSTEM: 'SYSTEM',
  E_TOO_MANY: 'TOO_MANY',
  E_FILTERED: 'SECCOMP_FILTERED',
};

describe('native error table', () => {
  it('covers every code of enum vmpk_error in vmpk.h, and nothing else', () => {
    expect(headerCodes.length).toBeGreaterThanOrEqual(13);
    expect([...NATIVE_CODES.keys()].sort()).toEqual(headerCodes.map(([, v]) => v).sort());
  });

  it.each(headerCodes)('VMPK_%s (%d) maps to its stable code', (name, value) => {
    const err = nativeError(value, 'key.alloc(4096)');
    expect(err).toBeInstanceOf(VmpkError);
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('VmpkError');
    expect(err.code).toBe(expected[name]);
    expect(err.nativeCode).toBe(value);
    expect(err.message.startsWith('key.alloc(4096): ')).toBe(true);
  });

  it('SYSTEM carries the errno and its name', () => {
    const err = nativeError(-12, 'key.protect(\'r\')', undefined, 12);
    expect(err.code).toBe('SYSTEM');
    expect(err.errno).toBe(12);
    expect(err.message).toContain('ENOMEM (errno 12)');
  });

  it('an unknown native code is reported as a mismatch of library and bindings', () => {
    const err = nativeError(-99, 'open()');
    expect(err.code).toBe('SYSTEM');
    expect(err.message).toContain('unknown code -99');
  });

  it('a call site can replace the generic advice', () => {
    const err = nativeError(-8, 'key.alloc(2097152)', 'no room for 2097152 bytes');
    expect(err.code).toBe('WINDOW_FULL');
    expect(err.message).toBe('key.alloc(2097152): no room for 2097152 bytes');
  });
});
