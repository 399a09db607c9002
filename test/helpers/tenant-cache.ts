// Helpers for the tenant-cache tests: a server in a child process (plain
// node, importing dist/), and a raw TCP client that reads exact replies.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export const cli = fileURLToPath(new URL('../../examples/tenant-cache/cli.mjs', import.meta.url));
export const VERSION_LINE = 'VERSION 1.6.0-vmpk-cache\r\n';

export interface CacheServer {
  child: ChildProcess;
  port: number;
  /** The listening line the server printed. */
  banner: string;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with how the child ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop: () => Promise<void>;
}

/** Starts `vmpk-cache --port 0 ...args` and waits for its listening line. */
export function startServer(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CacheServer> {
  const child = spawn(process.execPath, [cli, '--port', '0', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return new Promise((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /listening on 127\.0\.0\.1:(\d+) .*\n/.exec(out);
      if (m && out.length - d.length <= m.index + m[0].length) {
        resolve({
          child,
          port: Number(m[1]),
          banner: m[0].trim(),
          stdout: () => out,
          stderr: () => err,
          exited,
          stop: async () => {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
            await exited;
          },
        });
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    exited.then(({ code, signal }) => reject(new Error(`vmpk-cache exited (${code ?? signal}) before listening: ${err}`)));
  });
}

/** The server died by SIGSEGV with exactly one vmpk report: that line. */
export async function crashReport(server: CacheServer): Promise<string> {
  const { signal } = await server.exited;
  expect(signal, server.stderr()).toBe('SIGSEGV');
  const lines = server.stderr().split('\n').filter((l) => l.startsWith('vmpk: '));
  expect(lines, server.stderr()).toHaveLength(1);
  return lines[0]!;
}

/** A raw protocol client: sends bytes, reads replies up to a sentinel. */
export class Client {
  private received = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  closed = false;
  readonly socket: net.Socket;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d) => {
      this.received = Buffer.concat([this.received, d]);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  private wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  static connect(port: number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new Client(s)));
      s.once('error', reject);
    });
  }

  /** Waits until `pred` holds for the bytes received so far (or the socket closed), at most `ms`. */
  async until(pred: (b: Buffer) => boolean, ms = 60_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred(this.received) && !this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply in ${ms} ms; received ${JSON.stringify(this.received.toString('latin1').slice(-200))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Takes everything received so far. */
  take(): string {
    const s = this.received.toString('latin1');
    this.received = Buffer.alloc(0);
    return s;
  }

  /**
   * Sends `data` followed by "version\r\n" and returns the exact replies to
   * `data`: everything before the version line. The sentinel also proves the
   * connection is still in step with the protocol.
   */
  async call(data: string | Buffer): Promise<string> {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
    this.socket.write('version\r\n');
    await this.until((b) => b.toString('latin1').endsWith(VERSION_LINE));
    const s = this.take();
    if (!s.endsWith(VERSION_LINE)) throw new Error(`connection closed; received ${JSON.stringify(s.slice(-200))}`);
    return s.slice(0, -VERSION_LINE.length);
  }

  /** Waits for the server to close the connection; returns what came before. */
  async closedByServer(ms = 60_000): Promise<string> {
    await this.until(() => false, ms).catch((err) => {
      if (!this.closed) throw err;
    });
    return this.take();
  }

  close() {
    this.socket.destroy();
  }
}

/** Whether Debian's memcached is installed (scripts/vm/deps.sh installs it). */
export function haveMemcached(): boolean {
  return spawnSync('sh', ['-c', 'command -v memcached']).status === 0;
}

/** Starts the real memcached on a free port with `args` (for side-by-side tests). */
export async function startMemcached(args: string[]): Promise<{ port: number; stop: () => Promise<void> }> {
  const port = await new Promise<number>((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const p = (probe.address() as net.AddressInfo).port;
      probe.close(() => resolve(p));
    });
  });
  const user = process.getuid?.() === 0 ? ['-u', 'root'] : [];
  const child = spawn('memcached', [...user, '-l', '127.0.0.1', '-p', String(port), '-U', '0', ...args], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    if (i === 200 || child.exitCode !== null) throw new Error('memcached did not start');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return {
    port,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Sends `data` on a fresh connection and returns all it gets until the server closes or `idleMs` pass without data. */
export function exchange(port: number, data: string | Buffer, idleMs = 300): Promise<{ reply: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(data);
      arm();
    });
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ reply: Buffer.concat(chunks).toString('latin1'), closed });
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => finish(false), idleMs);
    };
    s.on('data', (d) => {
      chunks.push(d);
      arm();
    });
    s.on('end', () => finish(true));
    s.on('error', reject);
  });
}
