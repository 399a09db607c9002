// One worker of `vmpk-cache --threads N` (cli.mjs starts them): a whole
// server (framing, protocols, its own reply and request pools) over the
// tenants every thread shares (shared.mjs). It listens on the common port
// and serves the connections the kernel gives it.
import { parentPort, workerData as d } from 'node:worker_threads';
import { adoptMemory } from './memory.mjs';
import { Auth, Server } from './server.mjs';
import { Directory, SharedTenant } from './shared.mjs';
import { orderFor } from './buddy.mjs';

const memory = adoptMemory(d.memory);
const maxBlock = 1 << orderFor(d.options.maxItemSize);
let server = null;
const directory = new Directory(d.state, d.index, parentPort, d.inbox, (t, n) => new SharedTenant(server.cache, n, t.id, memory.tenant(t.memory), t.sab, maxBlock));
server = new Server({
  ...d.options,
  memory,
  auth: d.authText === null ? null : new Auth(d.authText),
  thread: { state: d.state, index: d.index, directory },
});
if (d.options.testFaults) {
  const { Faults } = await import('./faults.mjs');
  server.faults = new Faults(server.cache);
}
const address = await server.listen(d.port, d.host, d.share);
// The first worker's descriptor, for the others where SO_REUSEPORT is not to
// be had (Node 20: net has no public way to it; _handle.fd is libuv's, and
// threads.mjs stops with an error when it is not a number).
parentPort.postMessage({ op: 'listening', address, fd: server.net._handle?.fd ?? null });
