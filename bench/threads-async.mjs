// The async gate against the sync gate, as ratios measured side by side in
// one process:
//
//   with()            key.with('rw', fn)                      the sync gate
//   plain async       await (async () => fn())()              an async call, no vmpk
//   withAsync         await key.withAsync('rw', fn)           one piece: pin, gate, unpin
//   withAsync 1 await await key.withAsync('rw', async () => { fn(); await null; fn(); })
//                                                             two pieces, a gate each
//   plain 1 await     the same async function without vmpk
//   hooks on / off    for (...) await null, an unrelated task's awaits, while
//                     another task's async gate is pending (the thread's
//                     async_hooks callbacks are on, and cost every task) and
//                     after none ran for 150 ms (they are off)
//
//   node bench/threads-async.mjs            (npm run bench runs it)
//
// Both backends: pku (the stub build where the CPU has no PKU: WRPKRU not
// included) and mprotect (two mprotect calls per piece), in one process on
// the same library. Each trial times every variant once, in a rotating
// order, for about 2 ms of process CPU time each; ratios are per trial,
// median and quartiles over the trials.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, STUB_SO, cpuHasPku, ensureBuilt, heading, machine, median, quantile, ratioText, saveResult } from './lib.mjs';

const TRIALS = 41;
const HOOK_TRIALS = 15;
const BATCH_NS = 2e6;

export async function main() {
  heading('threads-async: key.withAsync() against key.with() (ratios, one process)');
  ensureBuilt({ dist: true });
  if (!process.env.VMPK_LIBRARY && !cpuHasPku()) process.env.VMPK_LIBRARY = STUB_SO;
  const { open } = await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href);
  const library = process.env.VMPK_LIBRARY || join(ROOT, 'native', 'build', 'libvmpk.so');

  const sides = {};
  for (const backend of ['pku', 'mprotect']) {
    const rt = open({ backend });
    const key = rt.createKey({ name: `bench-${backend}` });
    const other = rt.createKey({ name: `held-${backend}` });
    const bytes = key.alloc(4096).bytes;
    other.alloc(4096);
    sides[backend] = { rt, key, other, bytes };
  }
  const stubbed = sides.pku.rt.capabilities.pkruStubbed;

  let sink = 0;
  const variantsOf = ({ key, bytes }) => {
    const fn = () => (bytes[0] = (bytes[0] + 1) & 0xff);
    const twoPieces = async () => {
      fn();
      await null;
      fn();
    };
    const plain = async () => fn();
    return {
      with: async (n) => {
        for (let i = 0; i < n; i++) sink += key.with('rw', fn);
      },
      plain: async (n) => {
        // fn touches the region: give it a gate around the whole batch.
        key.with('rw', () => undefined);
        for (let i = 0; i < n; i++) sink += await key.with('rw', () => ({ p: plain() })).p;
      },
      withAsync: async (n) => {
        for (let i = 0; i < n; i++) sink += await key.withAsync('rw', fn);
      },
      withAsync1: async (n) => {
        for (let i = 0; i < n; i++) await key.withAsync('rw', twoPieces);
      },
    };
  };

  // The hooks' cost to other tasks: `await null` loops with an async gate
  // pending (hooks on) and with none for longer than the 100 ms the hooks
  // stay on after the last one (hooks off). Their own phase, since every
  // variant above leaves the hooks on.
  const { other } = sides.pku;
  const awaits = async (n) => {
    for (let i = 0; i < n; i++) await null;
  };
  const hookTime = async (held, n) => {
    let release;
    const pending = held ? other.withAsync('r', () => new Promise((resolve) => (release = resolve))) : undefined;
    if (!held) await new Promise((resolve) => setTimeout(resolve, 150));
    const t0 = process.cpuUsage();
    await awaits(n);
    const d = process.cpuUsage(t0);
    if (held) {
      release();
      await pending;
    }
    return ((d.user + d.system) * 1000) / n;
  };
  const hookIters = 20000;
  await hookTime(false, hookIters);
  const hooks = { on: [], off: [] };
  for (let t = 0; t < HOOK_TRIALS; t++) {
    hooks.off.push(await hookTime(false, hookIters));
    hooks.on.push(await hookTime(true, hookIters));
  }
  const hookTax = hooks.on.map((v, i) => v / hooks.off[i]);

  const results = {};
  for (const backend of ['pku', 'mprotect']) {
    const s = sides[backend];
    const variants = variantsOf(s);
    const names = Object.keys(variants);
    const time = async (name, n) => {
      const t0 = process.cpuUsage();
      await variants[name](n);
      const d = process.cpuUsage(t0);
      return ((d.user + d.system) * 1000) / n;
    };
    const iters = {};
    for (const name of names) {
      await time(name, 500);
      const per = median([await time(name, 1000), await time(name, 1000), await time(name, 1000)]);
      iters[name] = Math.max(100, Math.round(BATCH_NS / per));
    }
    const before = s.rt.stats();
    const ns = Object.fromEntries(names.map((n) => [n, []]));
    for (let t = 0; t < TRIALS; t++) {
      for (let j = 0; j < names.length; j++) {
        const name = names[(t + j) % names.length];
        ns[name].push(await time(name, iters[name]));
      }
    }
    const after = s.rt.stats();
    const ratio = (x, y) => ns[x].map((v, i) => v / ns[y][i]);
    results[backend] = {
      nsMedian: Object.fromEntries(names.map((n) => [n, median(ns[n])])),
      ratios: {
        withAsyncOverWith: ratio('withAsync', 'with'),
        withAsync1OverWith: ratio('withAsync1', 'with'),
        withAsyncOverPlain: ratio('withAsync', 'plain'),
      },
      pins: after.pins,
      gates: after.gates - before.gates,
    };
  }

  console.log(`machine: ${machine()}; node ${process.version}`);
  console.log(`library: ${library.replace(ROOT, '')}${stubbed ? ' (stub build: WRPKRU not included)' : ''}`);
  console.log(`trials: ${TRIALS}, interleaved; per-trial ratios, median (quartiles):`);
  for (const backend of ['pku', 'mprotect']) {
    const r = results[backend].ratios;
    const m = results[backend].nsMedian;
    console.log(`  ${backend}${backend === 'pku' && stubbed ? ' (stub)' : ''}:`);
    console.log(`    await withAsync(fn)            / with(fn):           ${ratioText(r.withAsyncOverWith)}`);
    console.log(`    await withAsync(1 await, 2 pieces) / with(fn):       ${ratioText(r.withAsync1OverWith)}`);
    console.log(`    await withAsync(fn)            / plain async call in a gate: ${ratioText(r.withAsyncOverPlain)}   (both with the hooks on)`);
    console.log(`    medians, ns per iteration: ${Object.entries(m).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ')}`);
  }
  console.log(`  another task's \`await null\`, hooks on (an async gate pending) / hooks off: ${ratioText(hookTax)}; medians ${median(hooks.on).toFixed(0)} / ${median(hooks.off).toFixed(0)} ns`);
  if (!(sink > 0)) throw new Error('threads-async: fn never ran');
  for (const { rt } of Object.values(sides)) rt.close();
  const q = (xs) => ({ median: median(xs), q1: quantile(xs, 0.25), q3: quantile(xs, 0.75) });
  const result = {
    stubbed,
    library,
    trials: TRIALS,
    hookTax: { ...q(hookTax), onNs: median(hooks.on), offNs: median(hooks.off) },
    backends: Object.fromEntries(Object.entries(results).map(([b, r]) => [b, { nsMedian: r.nsMedian, ratios: Object.fromEntries(Object.entries(r.ratios).map(([k, v]) => [k, q(v)])) }])),
  };
  saveResult('threads-async', result);
  return result;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
