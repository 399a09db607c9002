#!/usr/bin/env node
// The packed tarball as a user meets it: for each Node given (a bin
// directory), in an empty temporary project, with a PATH that has no cc, gcc
// or make:
//   - `npm install ./vmpk-*.tgz` succeeds and prints nothing about a compiler;
//   - require('vmpk') and import('vmpk') both open a runtime;
//   - a strict TypeScript consumer (nodenext, .mts and .cts) type-checks,
//     and key.with() of an async fn is a type error there;
//   - `npx vmpk --help` runs.
//
// With --arm64 NODE_BIN_DIR (Node's linux-arm64 build), the first project
// also runs under qemu-user there: koffi's linux-arm64 binary added as npm
// would add it on arm64, require('vmpk') opens a runtime, and `vmpk doctor`
// says the library is the prebuilt linux-arm64-glibc one.
//
//   node scripts/ci/consumer.mjs [--out DIR] [--tarball FILE] [--arm64 DIR] NODE_BIN_DIR...
// Ends with "consumer: N passed, N failed"; with --out, writes DIR/manifest.tsv
// (for scripts/vm/count.mjs) and DIR/consumer.log.
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
let out, tarball, arm64;
const bins = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--out') out = resolve(args[++i]);
  else if (args[i] === '--tarball') tarball = resolve(args[++i]);
  else if (args[i] === '--arm64') arm64 = resolve(args[++i]);
  else bins.push(resolve(args[i]));
}
if (!bins.length) bins.push(dirname(process.execPath));
const log = out ? join(out, 'consumer.log') : undefined;
if (out) {
  mkdirSync(out, { recursive: true });
  writeFileSync(log, '');
}
const say = (line) => {
  console.log(line);
  if (log) appendFileSync(log, line + '\n');
};

const work = mkdtempSync(join(tmpdir(), 'vmpk-consumer-'));
if (!tarball) {
  execFileSync('npm', ['pack', '--silent', '--pack-destination', work], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  tarball = join(work, readdirSync(work).find((f) => f.endsWith('.tgz')));
}

// A bin directory with what npm needs and no compiler: PATH is NODE_BIN:tools.
const tools = join(work, 'tools');
mkdirSync(tools);
const which = (name) => spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim();
for (const name of ['sh', 'bash', 'env', 'npm', 'npx', 'git', 'tar', 'gzip', 'uname', 'cat', 'ls', 'rm', 'mkdir', 'cp', 'mv', 'ln', 'chmod', 'sed', 'grep', 'readelf']) {
  const p = which(name);
  if (p) symlinkSync(p, join(tools, name));
}
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const typeRoots = join(root, 'node_modules', '@types');

let passed = 0;
let failed = 0;
const check = (label, fn) => {
  try {
    const note = fn();
    passed++;
    say(`ok   ${label}${note ? ` (${note})` : ''}`);
  } catch (err) {
    failed++;
    say(`FAIL ${label}: ${String(err.message ?? err).trim().split('\n').slice(0, 12).join('\n     ')}`);
  }
};

for (const bin of bins) {
  const version = execFileSync(join(bin, 'node'), ['--version'], { encoding: 'utf8' }).trim();
  const env = { ...process.env, PATH: `${bin}:${tools}`, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
  delete env.VMPK_LIBRARY;
  delete env.VMPK_BACKEND;
  const run = (cmd, argv, cwd) => {
    const r = spawnSync(cmd, argv, { cwd, env, encoding: 'utf8' });
    const text = `${r.stdout}${r.stderr}`;
    if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited with ${r.status ?? r.signal}:\n${text}`);
    return text;
  };
  const project = join(work, `project-${version}`);
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }, null, 2));
  say(`--- node ${version} (${bin}/node), PATH without a compiler: ${['cc', 'gcc', 'make'].every((c) => spawnSync('sh', ['-c', `command -v ${c}`], { env }).status !== 0)}`);

  check(`node ${version}: npm install ./${tarball.split('/').pop()} (no compiler error)`, () => {
    const text = run('npm', ['install', tarball], project);
    if (/\b(gcc|cc|make)\b|compil|build-essential|node-gyp/i.test(text)) throw new Error(`npm install mentions a compiler:\n${text}`);
    if (!existsSync(join(project, 'node_modules', 'vmpk', 'prebuilds', 'linux-x64-glibc', 'libvmpk.so'))) throw new Error('no prebuilt library installed');
    return text.split('\n').find((l) => /added \d+ package/.test(l))?.trim();
  });
  const openCode = "rt = v.open(); const k = rt.createKey(); const n = k.with('rw', () => 1); console.log(rt.backend, n); rt.close();";
  check(`node ${version}: require('vmpk') opens a runtime`, () =>
    run(join(bin, 'node'), ['-e', `const v = require('vmpk'); let ${openCode}`], project).trim().split('\n').pop());
  check(`node ${version}: import('vmpk') opens a runtime`, () =>
    run(join(bin, 'node'), ['--input-type=module', '-e', `const v = await import('vmpk'); let ${openCode}`], project).trim().split('\n').pop());
  check(`node ${version}: the library came from prebuilds/ (nothing built)`, () => {
    if (existsSync(join(project, 'node_modules', 'vmpk', 'native', 'build'))) throw new Error('native/build exists: something compiled');
  });
  check(`node ${version}: strict TypeScript consumer (nodenext, .mts and .cts)`, () => {
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, types: ['node'], typeRoots: [typeRoots] },
      include: ['*.mts', '*.cts'],
    }));
    const body = (how) => `${how}
const rt: Runtime = open();
const key = rt.createKey({ name: 'k' });
const n: number = key.with('rw', () => 1);
// @ts-expect-error key.with() refuses a promise-returning fn
key.with('rw', async () => 1);
const p: Promise<number> = key.withAsync('rw', async () => 2);
const e: VmpkErrorCode = 'INVALID_ARGUMENT';
void n; void p; void e; rt.close();
`;
    writeFileSync(join(project, 'esm.mts'), body("import { open, type Runtime, type VmpkErrorCode } from 'vmpk';"));
    writeFileSync(join(project, 'cjs.cts'), body("import vmpk = require('vmpk');\ntype Runtime = vmpk.Runtime; type VmpkErrorCode = vmpk.VmpkErrorCode; const { open } = vmpk;"));
    run(join(bin, 'node'), [tsc, '-p', 'tsconfig.json'], project);
  });
  check(`node ${version}: npx vmpk --help`, () => {
    run('npx', ['--no-install', 'vmpk', '--help'], project);
  });
}
if (arm64) {
  const project = join(work, readdirSync(work).find((f) => f.startsWith('project-')));
  const env = { ...process.env, QEMU_LD_PREFIX: process.env.QEMU_LD_PREFIX ?? '/usr/aarch64-linux-gnu' };
  delete env.VMPK_LIBRARY;
  delete env.VMPK_BACKEND;
  const qemu = (argv) => {
    const r = spawnSync('qemu-aarch64-static', ['-R', '0x10000000000', join(arm64, 'node'), ...argv], { cwd: project, env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`node ${argv.join(' ')} exited with ${r.status ?? r.signal}:\n${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  check('linux-arm64 (qemu-user): koffi\'s linux-arm64 binary added as npm adds it there', () => {
    const koffi = JSON.parse(readFileSync(join(project, 'node_modules', 'koffi', 'package.json'), 'utf8')).version;
    const into = join(project, 'node_modules', '@koromix');
    execFileSync('npm', ['pack', '--silent', `@koromix/koffi-linux-arm64@${koffi}`], { cwd: work, stdio: ['ignore', 'ignore', 'inherit'] });
    const tgz = join(work, readdirSync(work).find((f) => f.startsWith('koromix-koffi-linux-arm64')));
    mkdirSync(join(into, 'koffi-linux-arm64'), { recursive: true });
    execFileSync('tar', ['-xzf', tgz, '-C', join(into, 'koffi-linux-arm64'), '--strip-components=1']);
    return `koffi ${koffi}`;
  });
  check('linux-arm64 (qemu-user): require(\'vmpk\') opens a runtime', () => {
    const line = qemu(['-e', "const v = require('vmpk'); const rt = v.open(); const k = rt.createKey(); console.log(process.arch, rt.backend, k.with('rw', () => 1)); rt.close();"]).trim();
    if (line !== 'arm64 mprotect 1') throw new Error(`printed ${JSON.stringify(line)}`);
    return line;
  });
  check('linux-arm64 (qemu-user): vmpk doctor: the library is prebuilds/linux-arm64-glibc', () => {
    const r = spawnSync('qemu-aarch64-static', ['-R', '0x10000000000', join(arm64, 'node'), 'node_modules/vmpk/bin/vmpk.mjs', 'doctor', '--json'], { cwd: project, env, encoding: 'utf8' });
    const lib = JSON.parse(r.stdout).library;
    if (lib.source !== 'prebuilt' || !lib.path.endsWith('prebuilds/linux-arm64-glibc/libvmpk.so')) throw new Error(JSON.stringify(lib));
    return lib.path.split('node_modules/')[1];
  });
}
rmSync(work, { recursive: true, force: true });
say(`consumer: ${passed} passed, ${failed} failed`);
if (out) writeFileSync(join(out, 'manifest.tsv'), `#label\tpacked tarball in an empty project\n#skips\tok\nconsumer\ttext\t${failed ? 1 : 0}\t${log}\n`);
process.exit(failed ? 1 : 0);
