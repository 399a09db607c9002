// The tenant cache's get handler in one process, without the network: the
// same Cache over vmpk memory (pku backend) and over plain memory (isolation
// off), 16,384 items of 132 bytes in one tenant, interleaved trials of 3
// passes each; per-trial CPU-time ratio, median (quartiles). Where the CPU has
// no PKU the pku side is the stub build (PKRU a variable: no WRPKRU timed).
//
//   node bench/tenant-cache-gets.mjs
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { STUB_SO, cpuHasPku, ensureBuilt, machine, median, ratioText, saveResult } from './lib.mjs';

if (process.argv[2] !== '--child') {
  ensureBuilt({ dist: true });
  const env = { ...process.env };
  if (!cpuHasPku()) env.VMPK_LIBRARY = STUB_SO;
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child'], { stdio: 'inherit', env });
  process.exit(r.status ?? 1);
}

const { createMemory } = await import('../examples/tenant-cache/memory.mjs');
const { Cache } = await import('../examples/tenant-cache/store.mjs');
const make = (o) => new Cache({ memory: createMemory(o), tenantBytes: 16 << 20, maxItemSize: 1 << 20, tenants: { kind: 'hash', count: 1 }, maxTenants: 1 });
const caches = { off: make({ isolation: 'off' }), pku: make({ isolation: 'vmpk', backend: 'pku' }) };
const stubbed = caches.pku.memory.pkruStubbed;
const N = 16384;
const keys = Array.from({ length: N }, (_, i) => Buffer.from(`key-${String(i).padStart(28, '0')}`));
const value = Buffer.alloc(100, 0x78);
for (const c of Object.values(caches)) for (const k of keys) c.store('set', k, 0, k.length, 0, 0, value, 0, value.length, 0);

const TRIALS = 31;
const ns = { off: [], pku: [] };
const ratios = [];
for (let t = 0; t < TRIALS; t++) {
  const trial = {};
  for (const name of t % 2 ? ['off', 'pku'] : ['pku', 'off']) {
    const c = caches[name];
    const t0 = process.cpuUsage();
    for (let pass = 0; pass < 3; pass++) for (const k of keys) if (c.get(k, 0, k.length) === null) throw new Error('a get missed');
    const d = process.cpuUsage(t0);
    trial[name] = ((d.user + d.system) * 1000) / (3 * N);
    ns[name].push(trial[name]);
  }
  ratios.push(trial.pku / trial.off);
}
const before = caches.pku.memory.stats();
for (const k of keys) caches.pku.get(k, 0, k.length);
const after = caches.pku.memory.stats();
const per = (f) => (after[f] - before[f]) / N;

console.log(`bench/tenant-cache-gets: ${machine()}, node ${process.version}; pku side: ${stubbed ? 'stub build (no WRPKRU, nothing protected)' : 'real build'}`);
console.log(`  get, pku / isolation off, CPU time: ${ratioText(ratios, 3)}`);
console.log(`  medians: isolation off ${median(ns.off).toFixed(0)} ns, pku ${median(ns.pku).toFixed(0)} ns per get`);
console.log(`  per get on pku: ${per('gates').toFixed(2)} gates, ${per('syscalls').toFixed(2)} syscalls, ${per('pkruWrites').toFixed(2)} PKRU writes`);
saveResult('tenant-cache-gets', { stubbed, ratios, offNs: median(ns.off), pkuNs: median(ns.pku), perGet: { gates: per('gates'), syscalls: per('syscalls'), pkruWrites: per('pkruWrites') } });
for (const c of Object.values(caches)) c.close();
