// What the hardened mode costs Node itself: the same workloads in a plain
// and a hardened child process, alternating, the median of TRIALS each.
//
//   node bench/harden-node.mjs [TRIALS]           libuv's default file I/O (thread pool)
//   UV_USE_IO_URING=1 node bench/harden-node.mjs  plain uses libuv's io_uring; the hardened
//                                                 child runs with UV_USE_IO_URING=0: libuv
//                                                 sets its ring up at start-up, before vmpk
//                                                 could filter it, and a hardened open refuses
//                                                 a process that has one
//
// Workloads (wall time, each child alone): a 64 MiB file written and read
// back in 64 KiB async chunks; 20,000 async stats; 3,000 keep-alive HTTP
// GETs against a server in the same process; 10,000 thread-free sync
// syscalls (fs.fstatSync) for the filter's per-call cost; starting and
// joining 20 Workers (each thread clone goes to vmpk's supervisor hardened).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const TRIALS = Number(process.argv[2] ?? 5);
const self = fileURLToPath(import.meta.url);

if (process.argv[2] === 'child') {
  const harden = process.argv[3] === 'harden';
  const { open, hardenInfo } = await import('../dist/index.js');
  const rt = open({ harden });
  if (hardenInfo().active !== harden) throw new Error(`hardened: ${hardenInfo().active}, wanted ${harden}`);
  const fs = await import('node:fs');
  const fsp = await import('node:fs/promises');
  const http = await import('node:http');
  const os = await import('node:os');
  const path = await import('node:path');
  const { Worker } = await import('node:worker_threads');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmpk-hn-'));
  const out = {};
  const time = async (name, fn) => {
    const t = process.hrtime.bigint();
    await fn();
    out[name] = Number(process.hrtime.bigint() - t) / 1e6;
  };
  const chunk = Buffer.alloc(65536, 7);
  const file = path.join(dir, 'big');
  await time('fs_write_64MiB_ms', async () => {
    const h = await fsp.open(file, 'w');
    for (let i = 0; i < 1024; i++) await h.write(chunk, 0, chunk.length, i * chunk.length);
    await h.close();
  });
  await time('fs_read_64MiB_ms', async () => {
    const h = await fsp.open(file, 'r');
    const b = Buffer.alloc(65536);
    for (let i = 0; i < 1024; i++) await h.read(b, 0, b.length, i * b.length);
    await h.close();
  });
  await time('fs_stat_20k_ms', async () => {
    for (let i = 0; i < 20000; i += 50) await Promise.all(Array.from({ length: 50 }, () => fsp.stat(file)));
  });
  const fd = fs.openSync(file, 'r');
  await time('fstatSync_10k_ms', async () => {
    for (let i = 0; i < 10000; i++) fs.fstatSync(fd);
  });
  fs.closeSync(fd);
  const server = http.createServer((req, res) => res.end('ok'));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const port = server.address().port;
  await time('http_3k_ms', async () => {
    for (let i = 0; i < 3000; i++)
      await new Promise((resolve, reject) =>
        http.get({ port, host: '127.0.0.1', agent }, (res) => res.resume().on('end', resolve)).on('error', reject),
      );
  });
  agent.destroy();
  server.close();
  await time('workers_20_ms', async () => {
    for (let i = 0; i < 20; i++) {
      const w = new Worker('0', { eval: true });
      await new Promise((r) => w.on('exit', r));
    }
  });
  fs.rmSync(dir, { recursive: true });
  rt.close();
  console.log(JSON.stringify(out));
  process.exit(0);
}

const runs = { plain: [], hardened: [] };
for (let t = 0; t < TRIALS; t++) {
  const order = t % 2 ? ['hardened', 'plain'] : ['plain', 'hardened'];
  for (const which of order) {
    const env = { ...process.env };
    delete env.VMPK_HARDEN;
    if (which === 'hardened' && env.UV_USE_IO_URING === '1') env.UV_USE_IO_URING = '0';
    const r = spawnSync(process.execPath, [self, 'child', which === 'hardened' ? 'harden' : 'plain'], { encoding: 'utf8', env });
    if (r.status !== 0) throw new Error(`${which}: ${r.stderr}`);
    runs[which].push(JSON.parse(r.stdout.trim().split('\n').pop()));
  }
}
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
console.log(`harden-node trials=${TRIALS} node=${process.version} UV_USE_IO_URING=${process.env.UV_USE_IO_URING ?? ''}`);
for (const k of Object.keys(runs.plain[0])) {
  const p = median(runs.plain.map((r) => r[k]));
  const h = median(runs.hardened.map((r) => r[k]));
  console.log(`harden-node ${k} plain=${p.toFixed(1)} hardened=${h.toFixed(1)} ratio=${(h / p).toFixed(3)}`);
}
