#!/usr/bin/env node
// The native core's layers are its folders (native/Makefile's LAYERS), top to
// bottom. This prints every include and call edge between two layers and fails
// (exit 1) on:
//   - an edge that points up: a file includes a header of a higher layer, or
//     its object calls (or reads) a symbol defined in a higher layer;
//   - a cycle between modules (a module is foo.c with foo.h), whatever the
//     layers;
//   - a source file outside the layer folders, or an include it cannot resolve;
//   - docs/design.md's layer drawing differing from the folder tree.
// Entries of scripts/check-layers.known are reported but tolerated: the debt
// still to pay. A known entry that no longer occurs fails too, so the list
// only shrinks.
//
// Calls come from `nm` of the per-file objects of one build (default
// native/build/release, built first; NM and VMPK_LAYERS_BUILD override, for a
// cross build). Static inline functions in headers are include edges.
//
//   node scripts/check-layers.mjs            check, print the summary
//   node scripts/check-layers.mjs --edges    every edge, one per line
//   node scripts/check-layers.mjs --tree     the drawing design.md must hold
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join, relative, basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const native = join(root, 'native');
const src = join(native, 'src');

// Rank: lower is higher up. Folders of one rank may use each other (the OS and
// the CPU of one platform), but not in a cycle.
const LAYERS = [
  ['api', 0, 'the entry points of include/vmpk.h'],
  ['backend', 1, 'one file per backend, and the selection table'],
  ['core', 2, 'keys, regions, arena, key cache, gates, metadata,\n                      faults, shootdown, hardening policy'],
  ['platform', 3, 'what each <arch>/ implements: the signal frame, the\n                      probes, the one syscall instruction'],
  ['platform/linux', 3, 'system calls, threads, the seccomp filter\'s interface'],
  ['platform/x86_64', 3, 'PKRU instructions and checked writes, CPUID, the\n                      XSAVE signal frame, syscall, probes, the filter'],
  ['platform/aarch64', 3, 'no PKRU (mprotect only), the ESR signal frame, svc,\n                      probes, no filter (hardened mode unavailable)'],
];

// The CPU folder the build uses (native/Makefile's ARCH); the others are
// checked for their includes only (no objects of theirs here).
const ARCH = process.env.VMPK_LAYERS_ARCH ?? execFileSync(process.env.CC ?? 'cc', ['-dumpmachine'], { encoding: 'utf8' }).split('-')[0];
const CPUS = ['x86_64', 'aarch64'];
const foreign = (f) => CPUS.some((c) => c !== ARCH && dirname(f) === `platform/${c}`);

const args = new Set(process.argv.slice(2));
const problems = [];

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (/\.[ch]$/.test(name)) out.push(relative(src, p));
  }
  return out;
}

function layerOf(file) {
  let best = null;
  for (const [folder, rank] of LAYERS) {
    if (dirname(file) === folder) best = { folder, rank };
  }
  return best;
}

function tree() {
  const lines = ['native/', '  include/vmpk.h        the public C API', '  src/'];
  for (const [folder, , what] of LAYERS) {
    const files = walk(join(src, folder)).filter((f) => dirname(f) === folder).map((f) => basename(f));
    lines.push(`    ${(folder + '/').padEnd(18)}${what}`);
    let line = '      ';
    for (const f of files) {
      if (line.length + f.length > 78) {
        lines.push(line.trimEnd());
        line = '      ';
      }
      line += f + ' ';
    }
    lines.push(line.trimEnd());
  }
  return lines.join('\n');
}

if (args.has('--tree')) {
  console.log(tree());
  process.exit(0);
}

const files = walk(src);
const byBase = new Map();
for (const f of files) {
  if (!layerOf(f)) problems.push(`outside the layers: native/src/${f}`);
  byBase.set(basename(f), [...(byBase.get(basename(f)) ?? []), f]);
}
// A header name means the file in the includer's own folder, else the one of
// the build's CPU: each <arch>/ has the same names.
function resolve(from, name) {
  const all = byBase.get(basename(name)) ?? [];
  const own = all.filter((f) => dirname(f) === dirname(from));
  const usable = own.length ? own : all.filter((f) => !foreign(f) || foreign(from));
  if (usable.length > 1) problems.push(`"${name}" in native/src/${from} names several files: ${usable.join(', ')}`);
  return usable[0];
}

const stem = (f) => f.replace(/\.[ch]$/, '');
const edges = []; // { from, to, kind, what }

for (const f of files) {
  const text = readFileSync(join(src, f), 'utf8');
  for (const m of text.matchAll(/^\s*#\s*include\s+"([^"]+)"/gm)) {
    const name = m[1];
    if (name === 'vmpk.h') continue; // the public header: every layer may use it
    const to = resolve(f, name);
    if (!to) {
      problems.push(`unresolved include "${name}" in native/src/${f}`);
      continue;
    }
    edges.push({ from: f, to, kind: 'include', what: name });
  }
  // cpu.h includes the PKRU writes the Makefile names (pkru_hw.h or
  // pkru_stub.h, by flavour): an edge to each.
  if (/^\s*#\s*include\s+VMPK_PKRU_WRITES\b/m.test(text)) {
    for (const name of ['pkru_hw.h', 'pkru_stub.h']) {
      const to = resolve(f, name);
      if (to) edges.push({ from: f, to, kind: 'include', what: name });
      else problems.push(`unresolved include "${name}" (VMPK_PKRU_WRITES) in native/src/${f}`);
    }
  }
}

const build = process.env.VMPK_LAYERS_BUILD ?? join(native, 'build', 'release');
// The PKRU stub's files are linked by the stubbed flavours only (Makefile).
const stubOnly = (f) => /(^|\/)pkru_stub\.c$/.test(f);
const stubBuild = process.env.VMPK_LAYERS_STUB_BUILD ?? join(native, 'build', 'stub');
if (!process.env.VMPK_LAYERS_BUILD) {
  execFileSync('make', ['-s', '-C', native, 'build/release/libvmpk.a', 'build/stub/libvmpk.a'], { stdio: 'inherit' });
}
const nm = process.env.NM ?? 'nm';
const defined = new Map();
const undefinedBy = new Map();
for (const f of files.filter((x) => x.endsWith('.c') && !foreign(x))) {
  const obj = join(stubOnly(f) ? stubBuild : build, f.replace(/\.c$/, '.o'));
  if (!existsSync(obj)) {
    problems.push(`no object ${relative(root, obj)} for native/src/${f}`);
    continue;
  }
  const out = execFileSync(nm, ['-P', obj], { encoding: 'utf8' });
  const undef = [];
  for (const line of out.split('\n')) {
    const [sym, type] = line.split(' ');
    if (!sym || !type) continue;
    if (type === 'U' || type === 'w' || type === 'v') undef.push(sym); // v, w: weak references
    // The stub's pkey calls stand in for pkeys_linux.c's: edges go to those.
    else if (/[A-Z]/.test(type) && type !== 'W' && !(stubOnly(f) && defined.has(sym))) defined.set(sym, f);
  }
  undefinedBy.set(f, undef);
}
for (const [f, undef] of undefinedBy) {
  const seen = new Map();
  for (const sym of undef) {
    const to = defined.get(sym);
    if (!to || to === f) continue;
    seen.set(to, [...(seen.get(to) ?? []), sym]);
  }
  for (const [to, syms] of seen) edges.push({ from: f, to, kind: 'call', what: syms.sort().join(' ') });
}

// Upward edges.
const found = [];
for (const e of edges) {
  const a = layerOf(e.from);
  const b = layerOf(e.to);
  if (!a || !b) continue;
  if (b.rank < a.rank) found.push(`upward ${e.kind}: ${e.from} -> ${e.to} (${e.what})`);
}

// Cycles between modules (Tarjan's strongly connected components).
const graph = new Map();
for (const e of edges) {
  const a = stem(e.from);
  const b = stem(e.to);
  if (a === b) continue;
  if (!graph.has(a)) graph.set(a, new Set());
  graph.get(a).add(b);
}
{
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const on = new Set();
  const visit = (v) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const scc = [];
      let w;
      do {
        w = stack.pop();
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) found.push(`cycle: ${scc.sort().join(' ')}`);
    }
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) visit(v);
}

// The drawing in docs/design.md, between its layer markers.
const design = readFileSync(join(root, 'docs', 'design.md'), 'utf8');
const m = design.match(/<!-- layers:begin -->\n```\n([\s\S]*?)\n```\n<!-- layers:end -->/);
if (!m) problems.push('docs/design.md: no drawing between <!-- layers:begin --> and <!-- layers:end -->');
else if (m[1] !== tree()) problems.push('docs/design.md: the layer drawing differs from the folder tree (node scripts/check-layers.mjs --tree)');

const knownPath = join(root, 'scripts', 'check-layers.known');
const known = new Set(
  existsSync(knownPath)
    ? readFileSync(knownPath, 'utf8').split('\n').filter((l) => l.trim() && !l.startsWith('#'))
    : [],
);

// Between layers: counts per pair, then each edge on --edges.
const pairs = new Map();
for (const e of edges) {
  const a = layerOf(e.from)?.folder;
  const b = layerOf(e.to)?.folder;
  if (!a || !b || a === b) continue;
  const k = `${a} -> ${b}`;
  const c = pairs.get(k) ?? { include: 0, call: 0 };
  c[e.kind]++;
  pairs.set(k, c);
  if (args.has('--edges')) console.log(`${e.kind.padEnd(7)} ${e.from} -> ${e.to}  ${e.what}`);
}
console.log('edges between layers (include, call):');
for (const [k, c] of [...pairs].sort()) console.log(`  ${k.padEnd(36)} ${c.include} ${c.call}`);

for (const f of found) {
  if (known.has(f)) console.log(`known debt  ${f}`);
  else problems.push(f);
}
for (const k of known) if (!found.includes(k)) problems.push(`no longer occurs, remove from scripts/check-layers.known: ${k}`);

for (const p of problems) console.log(`FAIL  ${p}`);
console.log(`layers: ${problems.length === 0 ? 'ok' : `${problems.length} problem(s)`}`);
process.exit(problems.length === 0 ? 0 : 1);
