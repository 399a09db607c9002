// Attacks from JavaScript on the promise that no code but vmpk's and the
// caller's fn runs while a gate vmpk opened is open (issue 10, items 3, 4,
// 6 and 7): other modules' hooks and listeners around async gates, replaced
// built-ins and poisoned prototypes around the code cache's commit, forged
// handles and sizes. Each attack runs in a child process of its own (hooks
// and prototypes are process-wide, and a fault kills the child, not the
// runner), against a key holding a secret, and each asserts that the secret
// was neither read nor changed. The attacker's read tries the access first
// with runtime.probe() so that a denial is an exact line, not a crash; a
// regression would print the secret's byte. Runs on both backends: on the
// host (mprotect) and in the guest on pku.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { backend, onPku } from './helpers/vmpk.js';

const DIST = new URL('../dist/index.js', import.meta.url).href;
const KOFFI = new URL('../node_modules/koffi/index.js', import.meta.url).href;
const ROOT = fileURLToPath(new URL('..', import.meta.url));

// The victim: a key with a secret (0x5a in every byte), and the attacker's
// steal(), which reads (and writes) whatever the calling thread may access
// at the moment it runs, and logs what it got.
const PRELUDE = `
import { open, adopt, VmpkError } from '${DIST}';
import { createHook, AsyncLocalStorage } from 'node:async_hooks';
import v8 from 'node:v8';
const rt = open();
const key = rt.createKey({ name: 'secret' });
const region = key.alloc(4096);
const SECRET = 0x5a;
key.with('rw', () => region.bytes.fill(SECRET));
const view = region.bytes;
const log = new Set();
function steal(tag) {
  if (rt.probe(region, 'r')) {
    log.add(tag + ': read ' + view[0].toString(16));
    if (rt.probe(region, 'rw')) view[1] = 0x66;
  } else log.add(tag + ': denied');
}
function done() {
  const intact = key.with('r', () => view[0] === SECRET && view[1] === SECRET);
  console.log([...log].sort().join('\\n'));
  console.log('secret ' + (intact ? 'intact' : 'CHANGED'));
}
`;

interface Outcome {
  lines: string[];
  stdout: string;
  stderr: string;
  status: number | null;
  signal: NodeJS.Signals | null;
}

function attack(body: string): Outcome {
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', PRELUDE + body], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  return { lines: child.stdout.split('\n').filter((l) => l !== ''), stdout: child.stdout, stderr: child.stderr, status: child.status, signal: child.signal };
}

/** The attack ran to its end; every tag the attacker logged was denied, and the secret is intact. */
function expectDenied(o: Outcome, tags: string[]): void {
  expect(o.signal, o.stderr).toBe(null);
  expect(o.status, o.stderr).toBe(0);
  expect(o.stdout).not.toMatch(/: read /);
  expect(o.lines).toEqual([...tags.map((t) => `${t}: denied`).sort(), 'secret intact']);
}

describe(`attacks from JavaScript on async gates (${backend} backend)`, () => {
  it('async_hooks callbacks of other code (init, before, after, promiseResolve) enabled after vmpk loaded run without access around and inside withAsync pieces', () => {
    const o = attack(`
      let on = false;
      createHook({
        init() { if (on) steal('init'); },
        before() { if (on) steal('before'); },
        after() { if (on) steal('after'); },
        promiseResolve() { if (on) steal('promiseResolve'); },
      }).enable();
      on = true;
      await key.withAsync('rw', async () => {
        await new Promise((r) => setTimeout(r, 1));
        view[2] = 1; // fn's own code has access
        await null;
      });
      on = false;
      done();
    `);
    expectDenied(o, ['after', 'before', 'init', 'promiseResolve']);
  });

  it('a hook enabled inside fn, while the async gate runs, is kept out as well', () => {
    const o = attack(`
      await key.withAsync('r', async () => {
        const h = createHook({ before() { steal('late before'); }, after() { steal('late after'); } }).enable();
        await null;
        await new Promise((r) => setImmediate(r));
        h.disable();
      });
      done();
    `);
    expectDenied(o, ['late after', 'late before']);
  });

  it('V8 promise hooks of other code (onInit, onBefore, onAfter, onSettled, createHook) run without access', () => {
    const o = attack(`
      let on = false;
      const stops = [
        v8.promiseHooks.onInit(() => on && steal('onInit')),
        v8.promiseHooks.onBefore(() => on && steal('onBefore')),
        v8.promiseHooks.onAfter(() => on && steal('onAfter')),
        v8.promiseHooks.onSettled(() => on && steal('onSettled')),
        v8.promiseHooks.createHook({ before: () => on && steal('createHook before'), after: () => on && steal('createHook after') }),
      ];
      on = true;
      await key.withAsync('rw', async () => {
        await null;
        await Promise.resolve(1).then((x) => x + 1);
      });
      on = false;
      for (const s of stops) s();
      done();
    `);
    expectDenied(o, ['createHook after', 'createHook before', 'onAfter', 'onBefore', 'onInit', 'onSettled']);
  });

  it("a synchronous key.with(): other code's init hooks that fn's promises and timers trigger run without access", () => {
    const o = attack(`
      let on = false;
      createHook({ init(id, type) { if (on) steal('init ' + type); } }).enable();
      const stop = v8.promiseHooks.onInit(() => on && steal('v8 init'));
      on = true;
      key.with('rw', () => {
        Promise.resolve().catch(() => {});
        clearTimeout(setTimeout(() => {}, 1000));
        view[2] = 7; // fn's own code still has access after each
      });
      on = false;
      stop();
      done();
    `);
    expectDenied(o, ['init PROMISE', 'init Timeout', 'v8 init']);
  });

  it("'uncaughtException', its monitor and 'unhandledRejection' listeners never run inside a piece: a timer fn scheduled gets no gate", () => {
    const o = attack(`
      process.on('uncaughtExceptionMonitor', () => steal('monitor'));
      process.on('uncaughtException', () => steal('uncaughtException'));
      process.on('unhandledRejection', () => steal('unhandledRejection'));
      await key.withAsync('rw', async () => {
        setTimeout(() => { steal('timer fn scheduled'); throw new Error('boom'); }, 0);
        Promise.reject(new Error('unhandled'));
        await new Promise((r) => setTimeout(r, 20));
      });
      await new Promise((r) => setTimeout(r, 20));
      done();
    `);
    expectDenied(o, ['monitor', 'timer fn scheduled', 'uncaughtException', 'unhandledRejection']);
  });

  it('replaced AsyncLocalStorage methods, Array.prototype.push/pop, Function.prototype.call/apply and Reflect.apply are not what vmpk calls in a gate', () => {
    const o = attack(`
      const wrap = (obj, name, tag) => { const f = obj[name]; obj[name] = function (...a) { steal(tag); return Reflect.apply(f, this, a); }; };
      const apply = Reflect.apply;
      wrap(AsyncLocalStorage.prototype, 'run', 'als run');
      wrap(AsyncLocalStorage.prototype, 'getStore', 'als getStore');
      wrap(Array.prototype, 'push', 'push');
      wrap(Array.prototype, 'pop', 'pop');
      Object.defineProperty(Array.prototype, '0', { configurable: true, set(v) { steal('index setter'); Object.defineProperty(this, '0', { value: v, writable: true, enumerable: true, configurable: true }); } });
      await key.withAsync('rw', async () => { await null; await null; });
      key.with('r', () => 0);
      delete Array.prototype[0];
      done();
    `);
    // Other code may still call them when no gate is open; each tag that
    // appears was called there, never with access.
    expect(o.signal, o.stderr).toBe(null);
    expect(o.stdout).not.toMatch(/: read /);
    expect(o.lines.at(-1)).toBe('secret intact');
  });

  it("another module's AsyncLocalStorage enabled after vmpk's import does not make Node's store hook a wrapped one (no extra gates per promise)", () => {
    const o = attack(`
      const count = async () => {
        const g0 = rt.stats().gates;
        await key.withAsync('r', async () => { for (let i = 0; i < 10; i++) Promise.resolve(); await null; });
        return rt.stats().gates - g0;
      };
      // The other store first: it would enable Node's store hook before vmpk's first async gate.
      const als = new AsyncLocalStorage();
      await als.run({ other: true }, count).then((n) => log.add('with another store ' + n));
      log.add('alone ' + await count());
      done();
    `);
    expect(o.status, o.stderr).toBe(0);
    expect(o.lines).toEqual(['alone 2', 'with another store 2', 'secret intact']);
  });

  it('getters on what fn returns (then, constructor, Symbol.species) run after the gate closed', () => {
    const o = attack(`
      try {
        key.with('r', () => ({ get then() { steal('then getter (with)'); return undefined; } }));
      } catch {}
      class Evil extends Promise { static get [Symbol.species]() { steal('species'); return Promise; } }
      const p = Evil.resolve(1);
      Object.defineProperty(p, 'constructor', { get() { steal('constructor getter'); return Evil; } });
      await key.withAsync('r', () => p);
      await key.withAsync('r', () => ({ get then() { steal('then getter (withAsync)'); return undefined; } }));
      done();
    `);
    expectDenied(o, ['constructor getter', 'species', 'then getter (with)', 'then getter (withAsync)']);
  });

  it('a setter on Error.prototype.name does not run when vmpk makes an error inside a gate fn opened', () => {
    const o = attack(`
      const d = Object.getOwnPropertyDescriptor(Error.prototype, 'name');
      Object.defineProperty(Error.prototype, 'name', { configurable: true, get() { return 'Error'; }, set(v) { steal('name setter'); } });
      const r2 = key.alloc(4096);
      r2.free();
      let code;
      key.with('r', () => { try { r2.free(); } catch (e) { code = e.code; } });
      Object.defineProperty(Error.prototype, 'name', d);
      log.add('code ' + code);
      done();
    `);
    expect(o.status, o.stderr).toBe(0);
    expect(o.lines).toEqual(['code DOUBLE_FREE', 'secret intact']);
  });

  it("documented: a thenable fn awaits is called as part of fn (fn chose to call it), with fn's access", () => {
    const o = attack(`
      const thenable = { then(resolve) { steal('thenable fn awaited'); resolve(1); } };
      await key.withAsync('r', async () => { await thenable; });
      done();
    `);
    expect(o.status, o.stderr).toBe(0);
    expect(o.lines).toEqual(['thenable fn awaited: read 5a', 'secret intact']);
  });

  it("documented: a hook enabled before vmpk was imported is trusted: its 'after' runs before vmpk's closes the piece's gate", () => {
    // As a module preloaded with --import would: enabled, then vmpk imported.
    const script = `
      import { createHook } from 'node:async_hooks';
      let stealer = null;
      createHook({ after() { stealer?.('early after'); }, before() { stealer?.('early before'); } }).enable();
      const { open } = await import('${DIST}');
      const rt = open();
      const key = rt.createKey({ name: 'secret' });
      const region = key.alloc(4096);
      key.with('rw', () => region.bytes.fill(0x5a));
      const view = region.bytes;
      const log = new Set();
      stealer = (tag) => log.add(tag + (rt.probe(region, 'r') ? ': read ' + view[0].toString(16) : ': denied'));
      await key.withAsync('r', async () => { await null; });
      stealer = null;
      console.log([...log].sort().join('\\n'));
    `;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    expect(child.status, child.stderr).toBe(0);
    expect(child.stdout.split('\n').filter((l) => l !== '')).toEqual(['early after: denied', 'early after: read 5a', 'early before: denied']);
  });
});

describe(`attacks from JavaScript on the code cache (${backend} backend)`, () => {
  // The attacker's replaced built-in checks whether the cache is writable
  // at the moment it runs, and if so writes a WRPKRU into it (through a
  // koffi view, as any module could).
  const CACHE = `
    import koffi from '${KOFFI}';
    const cache = rt.createCodeCache({ name: 'jit', size: 4096 });
    const cview = new Uint8Array(koffi.view(cache.address, 4096));
    function tamper(tag) {
      if (rt.probe(cache.address, 'rw')) { cview.set([0x0f, 0x01, 0xef, 0xc3], 0); log.add(tag + ': wrote'); }
      else log.add(tag + ': denied');
    }
    function report() {
      let found = -1;
      for (let i = 0; i + 2 < 4096; i++) if (cview[i] === 0x0f && cview[i + 1] === 0x01 && cview[i + 2] === 0xef) found = i;
      log.add('wrpkru in cache ' + (found >= 0 ? 'at ' + found : 'none'));
      done();
    }
  `;

  it('replaced TypedArray methods, Object.freeze, BigInt and Array.prototype.push run with the cache closed; nothing unscanned is committed', () => {
    const o = attack(
      CACHE +
        `
      const T = Object.getPrototypeOf(Uint8Array.prototype);
      const wrap = (obj, name, tag) => { const f = obj[name]; obj[name] = function (...a) { tamper(tag); return Reflect.apply(f, this, a); }; };
      wrap(T, 'set', 'set'); wrap(T, 'fill', 'fill'); wrap(T, 'subarray', 'subarray');
      wrap(Array.prototype, 'push', 'push');
      const freeze = Object.freeze; Object.freeze = (x) => { tamper('freeze'); return freeze(x); };
      const B = globalThis.BigInt; globalThis.BigInt = function (x) { tamper('BigInt'); return B(x); };
      const len = Object.getOwnPropertyDescriptor(T, 'length');
      Object.defineProperty(T, 'length', { configurable: true, get() { tamper('length'); return len.get.call(this); } });
      const e = cache.emit([0xb8, 7, 0, 0, 0, 0xc3]);
      cache.reset();
      cache.emit((w) => { w.write([0x90]); w.write(new Uint8Array([0xc3])); });
      Object.defineProperty(T, 'length', len);
      log.add('entry at ' + e.offset);
      report();
    `,
    );
    expect(o.status, o.stderr).toBe(0);
    expect(o.stdout).not.toMatch(/: wrote/);
    expect(o.lines).toContain('wrpkru in cache none');
    expect(o.lines).toContain('entry at 0');
    expect(o.lines.at(-1)).toBe('secret intact');
  });

  it('the writer and the objects it passes (getters, a Proxy, toPrimitive) run with the cache closed', () => {
    const o = attack(
      CACHE +
        `
      const bytes = new Proxy([0x90, 0xc3], { get(t, p) { tamper('proxy ' + String(p)); return Reflect.get(t, p); } });
      const getters = { get length() { tamper('length getter'); return 1; }, get 0() { tamper('element getter'); return 0xc3; } };
      cache.emit((w) => {
        tamper('writer');
        w.write(bytes);
        w.write(getters);
        try { w.patch({ [Symbol.toPrimitive]() { tamper('toPrimitive'); return 0; } }, [0x90]); } catch (e) { log.add('patch ' + e.code); }
      });
      report();
    `,
    );
    expect(o.status, o.stderr).toBe(0);
    expect(o.stdout).not.toMatch(/: wrote/);
    expect(o.lines).toContain('writer: denied');
    expect(o.lines).toContain('length getter: denied');
    expect(o.lines).toContain('patch INVALID_ARGUMENT');
    expect(o.lines).toContain('wrpkru in cache none');
  });

  it('a WRPKRU the writer hides for after the scan is never committed: the scan sees the staged bytes that are copied', () => {
    const o = attack(
      CACHE +
        `
      let held;
      try {
        cache.emit((w) => { held = new Uint8Array([0x90, 0x90, 0xc3]); w.write(held); });
        held.set([0x0f, 0x01, 0xef]); // after write(): the staging copy is what counts
        log.add('emit ok');
      } catch (e) { log.add('emit ' + e.code); }
      try { cache.emit([0x0f, 0x01, 0xef, 0xc3]); } catch (e) { log.add('emit ' + e.code); }
      report();
    `,
    );
    expect(o.status, o.stderr).toBe(0);
    expect(o.lines).toEqual(['emit UNSAFE_CODE', 'emit ok', 'wrpkru in cache none', 'secret intact']);
  });
});

describe(`attacks from JavaScript on handles and views (${backend} backend)`, () => {
  it('adopt() of a handle with a forged region size or address is refused (NOT_A_REGION); a forged key number is a dead key (KEY_DESTROYED on use, no region)', () => {
    const o = attack(`
      const other = rt.createKey({ name: 'other' });
      const ro = other.alloc(4096);
      const h = key.handle();
      const tries = {
        size: { ...h, regions: [{ address: region.address, size: 2 ** 30 }] },
        inside: { ...h, regions: [{ address: region.address + 4096n, size: 4096 }] },
        otherKey: { ...h, regions: [{ address: ro.address, size: 4096 }] },
        wild: { ...h, regions: [{ address: 0x1000n, size: 4096 }] },
        key: { ...h, key: 12345, regions: [] },
      };
      for (const [name, t] of Object.entries(tries)) {
        try {
          const k = adopt(t);
          let use = 'ok';
          try { k.with('r', () => 0); } catch (e) { use = e.code; }
          log.add(name + ': adopted, ' + k.regions.length + ' regions, gate ' + use);
        }
        catch (e) { log.add(name + ': ' + e.code); }
      }
      log.add('good: ' + adopt(h).regions[0].size);
      done();
    `);
    expect(o.status, o.stderr).toBe(0);
    expect(o.lines).toEqual(['good: 4096', 'inside: NOT_A_REGION', 'key: adopted, 0 regions, gate KEY_DESTROYED', 'otherKey: NOT_A_REGION', 'size: NOT_A_REGION', 'wild: NOT_A_REGION', 'secret intact']);
  });

  it('probe() of a destroyed key\u2019s region answers false after its window went to the next key', () => {
    const o = attack(`
      const old = rt.createKey({ name: 'old' });
      const r = old.alloc(4096);
      old.destroy();
      const next = rt.createKey({ name: 'next', access: 'rw' });
      const rn = next.alloc(4096);
      log.add('reused ' + (rn.address === r.address));
      log.add('probe ' + rt.probe(r, 'r'));
      done();
    `);
    expect(o.status, o.stderr).toBe(0);
    expect(o.lines).toEqual(['probe false', 'reused true', 'secret intact']);
  });

  it('region.bytes of a region over 4 GiB throws VIEW_TOO_LARGE (not a napi fatal error)', () => {
    const o = attack(`
      const big = rt.createKey({ name: 'big', windowSize: 2 ** 33 });
      const r = big.alloc(2 ** 32 + 4096);
      try { r.bytes; log.add('view made'); } catch (e) { log.add('bytes ' + e.code); }
      done();
    `);
    expect(o.signal, o.stderr).toBe(null);
    expect(o.lines).toEqual(['bytes VIEW_TOO_LARGE', 'secret intact']);
  });

  // A view kept past destroy(): closed now, in test/attacks-views.test.ts
  // (detached on Node 22+, the window quarantined on Node 20).
});

describe.skipIf(!onPku)('attacks from JavaScript: the thread-local gate (pku backend)', () => {
  it('other code on the same thread between pieces cannot read: a direct read kills the process with the report, before any byte', () => {
    const o = attack(`
      createHook({ after() { if (globalThis.__go) { process.stdout.write('reading\\n'); process.stdout.write('byte ' + view[0] + '\\n'); } } }).enable();
      globalThis.__go = true;
      await key.withAsync('r', async () => { await null; });
      done();
    `);
    expect(o.signal, o.stderr).toBe('SIGSEGV');
    expect(o.stdout).toBe('reading\n');
    expect(o.stderr).toMatch(/^vmpk: SIGSEGV: read of key "secret"/m);
  });
});
