#!/usr/bin/env node
// npm run check:package: packs the package (prepack builds the library, the
// TypeScript and the prebuilt library) and lints what would be published:
//   - publint --strict: the exports map, files, fields;
//   - attw (@arethetypeswrong/cli): the types each resolution mode sees.
// attw's cjs-resolves-to-esm is ignored on purpose: vmpk is ESM only, and
// every Node that package.json's engines allows (>= 22.12) can require() an
// ES module (the exports map's "default" condition reaches it), and
// TypeScript's nodenext mode types such a require(); scripts/ci/consumer.mjs
// checks both for real. A CommonJS build would give two copies of vmpk's
// module state (its native binding, its brands) in one process.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'vmpk-pack-'));
let failed = 0;
const run = (cmd, args) => {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  try {
    execFileSync(cmd, args, { stdio: 'inherit' });
  } catch {
    failed++;
  }
};
try {
  execFileSync('npm', ['pack', '--silent', '--pack-destination', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  const tgz = join(dir, readdirSync(dir).find((f) => f.endsWith('.tgz')));
  run('npx', ['--no-install', 'publint', '--strict', tgz]);
  run('npx', ['--no-install', 'attw', tgz, '--ignore-rules', 'cjs-resolves-to-esm']);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(failed ? `check:package: ${failed} check(s) failed` : 'check:package: publint and attw pass');
process.exit(failed ? 1 : 0);
