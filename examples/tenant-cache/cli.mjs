#!/usr/bin/env node
// vmpk-cache: a memcached-protocol cache server whose tenants are isolated
// from each other by vmpk keys. See examples/tenant-cache/README.md.
import { parseArgs } from 'node:util';
import { createMemory } from './memory.mjs';
import { readFileSync } from 'node:fs';
import { Auth, Server } from './server.mjs';
import { orderFor } from './buddy.mjs';

const USAGE = `usage: vmpk-cache [options]
  --port N              TCP port (default 11311; 0 picks a free one)
  --host ADDR           address to listen on (default 127.0.0.1)
  --isolation vmpk|off  vmpk keys per tenant (default), or plain memory
  --backend B           auto|pku|mprotect (default: $VMPK_BACKEND, else auto)
  --hardware-keys N     pku: at most N hardware keys (default: all it gets)
  --tenants MODE        prefix (default): the tenant is the key up to the first
                        separator; hash:N: keys are spread over N tenants by hash
  --separator C         the prefix separator (default ':')
  --tenant-bytes SIZE   memory per tenant (default 4m)
  --max-item-size SIZE  the largest key + value (default 1m)
  --max-tenants N       (default 65536)
  --max-connections N   (default 1024)
  -Y, --auth-file FILE  user:password lines; a connection must authenticate
                        (memcached's text "set" or binary SASL PLAIN) and is
                        then bound to its user's tenant
  --reply-memory SIZE   buffers for replies, all connections (default 32m)
  --request-memory SIZE buffers for values arriving in pieces (default 32m)
  --write-timeout S     disconnect a client that leaves replies unread for S
                        seconds (default 30; 0: never)
  --read-timeout S      disconnect a client that holds request buffers for a
                        value and sends nothing for S seconds (default 30;
                        0: never)
  --threads N           serve connections on N worker threads (default 1: the
                        main thread); every thread serves every tenant
  --test-faults         enable the debug commands (fault injection; also
                        VMPK_CACHE_TEST_FAULTS=1). Never in production.`;

function fail(message) {
  process.stderr.write(`vmpk-cache: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function size(name, text) {
  const m = /^([0-9]+)([kmg]?)$/i.exec(text);
  if (!m) fail(`--${name} must be a size like 65536, 64k or 4m, not '${text}'`);
  const n = Number(m[1]) * { '': 1, k: 1024, m: 1 << 20, g: 1 << 30 }[m[2].toLowerCase()];
  if (!Number.isSafeInteger(n) || n < 64) fail(`--${name} must be at least 64 bytes`);
  return n;
}

function count(name, text, min, max) {
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || n < min || n > max) fail(`--${name} must be a whole number from ${min} to ${max}, not '${text}'`);
  return n;
}

let args;
try {
  args = parseArgs({
    options: {
      port: { type: 'string', default: '11311' },
      host: { type: 'string', default: '127.0.0.1' },
      isolation: { type: 'string', default: 'vmpk' },
      backend: { type: 'string' },
      'hardware-keys': { type: 'string' },
      tenants: { type: 'string', default: 'prefix' },
      separator: { type: 'string', default: ':' },
      'tenant-bytes': { type: 'string', default: '4m' },
      'max-item-size': { type: 'string', default: '1m' },
      'max-tenants': { type: 'string', default: '65536' },
      'max-connections': { type: 'string', default: '1024' },
      'auth-file': { type: 'string', short: 'Y' },
      'reply-memory': { type: 'string', default: '32m' },
      'request-memory': { type: 'string', default: '32m' },
      'write-timeout': { type: 'string', default: '30' },
      'read-timeout': { type: 'string', default: '30' },
      threads: { type: 'string', default: '1' },
      'test-faults': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  }).values;
} catch (err) {
  fail(err.message);
}
if (args.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
if (args.isolation !== 'vmpk' && args.isolation !== 'off') fail(`--isolation must be vmpk or off, not '${args.isolation}'`);
if (args.backend !== undefined && !['auto', 'pku', 'mprotect'].includes(args.backend)) fail(`--backend must be auto, pku or mprotect, not '${args.backend}'`);
let tenants;
if (args.tenants === 'prefix') {
  if (Buffer.byteLength(args.separator) !== 1 || args.separator === ' ') fail('--separator must be one byte, not a space');
  tenants = { kind: 'prefix', separator: Buffer.from(args.separator)[0] };
} else {
  const m = /^hash:([0-9]+)$/.exec(args.tenants);
  if (!m) fail(`--tenants must be prefix or hash:N, not '${args.tenants}'`);
  tenants = { kind: 'hash', count: count('tenants', m[1], 1, 1 << 24) };
}
const maxItemSize = size('max-item-size', args['max-item-size']);
const tenantBytes = size('tenant-bytes', args['tenant-bytes']);
if (maxItemSize > tenantBytes) fail('--max-item-size must not exceed --tenant-bytes');
const testFaults = args['test-faults'] || process.env.VMPK_CACHE_TEST_FAULTS === '1';

const threads = count('threads', args.threads, 1, 64);
let auth = null;
let authText = null;
if (args['auth-file'] !== undefined) {
  try {
    authText = readFileSync(args['auth-file'], 'latin1');
    auth = new Auth(authText);
  } catch (err) {
    fail(`--auth-file ${args['auth-file']}: ${err.message}`);
  }
}
const replyMemory = size('reply-memory', args['reply-memory']);
const requestMemory = size('request-memory', args['request-memory']);

const memory = createMemory({
  isolation: args.isolation,
  backend: args.backend,
  maxHardwareKeys: args['hardware-keys'] === undefined ? undefined : count('hardware-keys', args['hardware-keys'], 1, 15),
  shared: threads > 1,
});
const options = {
  tenantBytes,
  maxItemSize,
  tenants,
  maxTenants: count('max-tenants', args['max-tenants'], 1, 1 << 24),
  maxConnections: count('max-connections', args['max-connections'], 1, 1 << 20),
  testFaults,
  replyMemory,
  requestMemory,
  writeTimeout: count('write-timeout', args['write-timeout'], 0, 86400),
  readTimeout: count('read-timeout', args['read-timeout'], 0, 86400),
};
const port = count('port', args.port, 0, 65535);
const describe = (address, extra = '') => {
  const backend = memory.isolation === 'off' ? 'isolation off' : `vmpk ${memory.backend}${memory.pkruStubbed ? ' (stub: PKRU is a variable, nothing is protected)' : ''}`;
  const bytes = Math.ceil(tenantBytes / (1 << orderFor(maxItemSize))) * (1 << orderFor(maxItemSize));
  return `vmpk-cache: listening on ${address.address}:${address.port} (${backend}, ${args.tenants} tenants, ${bytes} bytes each${auth ? `, ${auth.users.size} authenticated tenants` : ''}${extra}${testFaults ? ', TEST FAULTS ENABLED' : ''})\n`;
};
if (threads > 1) {
  const { startThreads } = await import('./threads.mjs');
  const address = await startThreads({ memory, options, authText, threads, port, host: args.host }).catch((err) => fail(err.message));
  process.stdout.write(describe(address, `, ${threads} threads (${address.share})`));
} else {
  // One thread: the main thread serves everything, as before --threads.
  const server = new Server({ ...options, memory, auth });
  if (testFaults) {
    const { Faults } = await import('./faults.mjs');
    server.faults = new Faults(server.cache);
  }
  const address = await server.listen(port, args.host).catch((err) => fail(err.message));
  process.stdout.write(describe(address));
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      server.close().then(() => process.exit(0));
    });
  }
}
