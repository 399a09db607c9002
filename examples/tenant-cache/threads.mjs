// The main thread of `vmpk-cache --threads N`: it owns the vmpk runtime and
// every tenant's key and memory, creates tenants when workers ask
// (shared.mjs's Registry), and starts N workers (worker.mjs) that accept
// and serve connections. It serves none itself.
import { MessageChannel, Worker } from 'node:worker_threads';
import { orderFor } from './buddy.mjs';
import { SERVER_COUNTERS } from './server.mjs';
import { CACHE_COUNTERS, Registry, sharedState, tenantIndexBuffer } from './shared.mjs';

/** Whether net's listen() takes reusePort (SO_REUSEPORT): Node 22.12+ and 23.1+, on Linux. */
export function hasReusePort() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  return process.platform === 'linux' && (major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12));
}

/**
 * Starts the workers; resolves with the address they listen on and how
 * they share it (`share`: 'SO_REUSEPORT' or 'one shared descriptor').
 */
export async function startThreads({ memory, options, authText, threads, port, host }) {
  if (memory.backend === 'mprotect') {
    process.stderr.write(
      `vmpk-cache: warning: --threads ${threads} on the mprotect backend: a gate opens a tenant's pages to every thread, ` +
        'so a request served on another thread at the same moment is not isolated from that tenant (examples/tenant-cache/README.md, "Threads")\n',
    );
  }
  const maxBlock = 1 << orderFor(options.maxItemSize);
  const tenantBytes = Math.ceil(options.tenantBytes / maxBlock) * maxBlock;
  const state = sharedState(threads, [...SERVER_COUNTERS, ...CACHE_COUNTERS]);
  const owned = []; // the main thread's tenant objects: their keys live as long as the server
  const registry = new Registry(state, options.maxTenants, (n, id, label) => {
    const t = memory.tenant(`tenant ${label ?? `#${n}`}`, tenantBytes);
    owned.push(t);
    return { id, memory: t.share(), sab: tenantIndexBuffer(tenantBytes, maxBlock) };
  });
  const reusePort = hasReusePort();
  const workers = [];
  let address = null;
  let fd = null;
  for (let i = 0; i < threads; i++) {
    const { port1, port2 } = new MessageChannel();
    registry.inboxes.push(port1);
    const share = reusePort ? { reusePort: true } : i === 0 ? {} : { fd };
    const worker = new Worker(new URL('./worker.mjs', import.meta.url), {
      workerData: { index: i, state, inbox: port2, memory: memory.share(), options, authText, port: address?.port ?? port, host, share },
      transferList: [port2],
    });
    workers.push(worker);
    const listening = new Promise((resolve, reject) => {
      worker.on('message', (m) => {
        if (m.op === 'listening') resolve(m);
        else registry.request(m);
      });
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`worker ${i + 1} exited (${code}) before listening`)));
    });
    const m = await listening;
    address ??= m.address;
    if (i === 0 && !reusePort) {
      if (typeof m.fd !== 'number' || m.fd < 0) throw new Error('--threads needs SO_REUSEPORT (Node 22.12+ or 23.1+ on Linux) or a listening descriptor to share; neither is available');
      fd = m.fd;
    }
  }
  for (const [i, worker] of workers.entries()) {
    worker.on('error', (err) => {
      process.stderr.write(`vmpk-cache: worker ${i + 1}: ${err.stack ?? err}\n`);
      process.exit(1);
    });
    worker.on('exit', (code) => {
      process.stderr.write(`vmpk-cache: worker ${i + 1} exited (${code})\n`);
      process.exit(1);
    });
  }
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
  return { ...address, share: reusePort ? 'SO_REUSEPORT' : 'one shared descriptor' };
}
