// Which backend open() picks: the option, else $VMPK_BACKEND, else auto
// (pku where the CPU and kernel support it, else mprotect).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { open, pkuSupported } from '../src/index.js';
import { expectVmpkError, openRuntime } from './helpers/vmpk.js';

const saved = process.env['VMPK_BACKEND'];
const auto = pkuSupported() ? 'pku' : 'mprotect';

function setEnv(value: string | undefined): void {
  if (value === undefined) delete process.env['VMPK_BACKEND'];
  else process.env['VMPK_BACKEND'] = value;
}

describe('backend selection', () => {
  beforeEach(() => setEnv(undefined));
  afterEach(() => setEnv(saved));

  it('without option or environment: auto', () => {
    expect(openRuntime().backend).toBe(auto);
    setEnv('');
    expect(openRuntime().backend).toBe(auto);
  });

  it('VMPK_BACKEND=mprotect picks mprotect, with process-wide gates', () => {
    setEnv('mprotect');
    const rt = openRuntime();
    expect(rt.backend).toBe('mprotect');
    expect(rt.capabilities.threadLocal).toBe(false);
  });

  it('VMPK_BACKEND=auto picks auto', () => {
    setEnv('auto');
    expect(openRuntime().backend).toBe(auto);
  });

  it('VMPK_BACKEND with another value is INVALID_ARGUMENT naming the variable', () => {
    for (const bad of ['PKU', 'mprotect ', 'hardware', '1']) {
      setEnv(bad);
      const err = expectVmpkError(() => open(), 'INVALID_ARGUMENT');
      expect(err.message).toContain('VMPK_BACKEND');
      expect(err.message).toContain(JSON.stringify(bad));
    }
  });

  it('the option wins over the environment, an explicit auto included', () => {
    setEnv('hardware'); // invalid, but never read
    expect(openRuntime({ backend: 'mprotect' }).backend).toBe('mprotect');
    setEnv('mprotect');
    expect(openRuntime({ backend: 'auto' }).backend).toBe(auto);
    setEnv('pku');
    expect(openRuntime({ backend: 'auto' }).backend).toBe(auto);
  });

  it('VMPK_BACKEND=pku: pku with thread-local gates where supported, else UNSUPPORTED_BACKEND naming the variable (no SIGILL)', () => {
    setEnv('pku');
    if (pkuSupported()) {
      const rt = openRuntime();
      expect(rt.backend).toBe('pku');
      expect(rt.capabilities.threadLocal).toBe(true);
      expect(rt.capabilities.hardwareKeys).toBeGreaterThan(0);
    } else {
      const err = expectVmpkError(() => open(), 'UNSUPPORTED_BACKEND');
      expect(err.message).toContain('VMPK_BACKEND=pku');
      expect(err.message).toContain("'mprotect'");
    }
  });

  it('the mprotect backend works everywhere when asked for', () => {
    const rt = openRuntime({ backend: 'mprotect', maxHardwareKeys: 3 });
    expect(rt.backend).toBe('mprotect');
    expect(rt.capabilities.hardwareKeys).toBe(0);
    const k = rt.createKey();
    const r = k.alloc(4096);
    expect(k.with('rw', () => (r.bytes[0] = 1))).toBe(1);
  });
});
