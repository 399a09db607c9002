// Many isolated secrets, each in its own virtual key: readable only inside a
// gate on the thread that opened it. Run: node examples/quickstart.mjs
import { open } from '../dist/index.js';

const rt = open({ maxHardwareKeys: 4 });           // fewer hardware keys than keys: evictions
const secrets = Array.from({ length: 100 }, (_, i) => {
  const key = rt.createKey({ name: `tenant-${i}` }); // closed to every thread by default
  const region = key.alloc(64);
  key.with('rw', () => region.bytes.set(new TextEncoder().encode(`secret of tenant ${i}`)));
  return { key, region };
});
const { key, region } = secrets[42];
const text = key.with('r', () => new TextDecoder().decode(region.bytes).replace(/\0+$/, ''));
console.log(`${text}; readable outside a gate: ${rt.probe(region, 'r')}`);
const { gates, hits, misses, evictions, syscalls } = rt.stats();
console.log(`${rt.backend}: ${gates} gates, ${hits} hits, ${misses} misses, ${evictions} evictions, ${syscalls} syscalls`);
rt.close();
