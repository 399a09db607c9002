// Compiles integer expressions to x86-64 machine code in a vmpk code cache,
// calls them through koffi, and checks every result against JavaScript.
//
//   node examples/jit/calc.mjs "(1+2)*x - 7" ["x*x + y" ...] [x=5] [y=-3] [--dump] [--attack]
//
// Without x= / y= each expression runs on a few sample points. --dump prints
// the machine code. --attack then runs JIT code that writes into the cache
// outside an emit, as a hijacked JIT would: vmpk's handler reports it and the
// process dies by SIGSEGV. Exit status: 0 if every result matched, 1 if not,
// 2 for bad usage.
import { open } from '../../dist/index.js';
import { SyntaxError, compile, evaluate, parse } from './compile.mjs';

const args = process.argv.slice(2);
const exprs = [];
const given = {};
let dump = false;
let attack = false;
for (const a of args) {
  const m = /^([xy])=(-?\d+)$/.exec(a);
  if (m) given[m[1]] = BigInt(m[2]);
  else if (a === '--dump') dump = true;
  else if (a === '--attack') attack = true;
  else if (a.startsWith('--')) usage(`unknown option ${a}`);
  else exprs.push(a);
}
if (exprs.length === 0 && !attack) usage('no expression given');

function usage(why) {
  console.error(`calc: ${why}\nusage: node examples/jit/calc.mjs EXPR... [x=N] [y=N] [--dump] [--attack]`);
  process.exit(2);
}

const points =
  given.x !== undefined || given.y !== undefined
    ? [{ x: given.x ?? 0n, y: given.y ?? 0n }]
    : [
        { x: 0n, y: 0n },
        { x: 5n, y: -3n },
        { x: -7n, y: 2n },
        { x: 1000000n, y: 12345n },
      ];

const trees = exprs.map((text) => {
  try {
    return [text, parse(text)];
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err;
    console.error(`calc: ${err.message}`);
    process.exit(2);
  }
});

const rt = open();
const cache = rt.createCodeCache({ name: 'calc', size: 64 * 1024 });
console.log(`vmpk ${rt.backend} backend${rt.capabilities.threadLocal ? '' : ' (emits are process-wide: W^X toggling)'}; code cache of ${cache.size} bytes`);

const hex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(' ');
const show = (v) => (v === null ? 'division by zero' : String(v));
let mismatches = 0;
for (const [text, tree] of trees) {
  const { fn, entry, refused } = compile(cache, tree);
  if (refused) {
    const kind = /WRPKRU|XRSTOR/.exec(refused.message)?.[0];
    console.log(`${text}: commit() refused the plain encoding: a constant's bytes hold ${kind} at cache offset ${refused.offset}; recompiled with split constants`);
  }
  console.log(`${text}: ${entry.size} bytes at cache offset ${entry.offset}`);
  if (dump) console.log(`  ${hex(cache.read(entry.offset, entry.size))}`);
  for (const p of points) {
    const got = fn(p.x, p.y).value;
    const want = evaluate(tree, p);
    const ok = got === want;
    if (!ok) mismatches++;
    console.log(`  x=${p.x} y=${p.y}: ${show(got)} (JavaScript: ${show(want)}) ${ok ? 'ok' : 'MISMATCH'}`);
  }
}

if (attack) {
  // movabs rax, <the cache's first byte>; mov byte [rax], 0xc3; ret
  const target = cache.address;
  const imm = Array.from({ length: 8 }, (_, k) => Number((target >> BigInt(8 * k)) & 0xffn));
  const entry = cache.emit([0x48, 0xb8, ...imm, 0xc6, 0x00, 0xc3, 0xc3]);
  const overwrite = cache.function(entry.offset, 'void (void)');
  console.log(`attack: JIT code at cache offset ${entry.offset} writes to 0x${target.toString(16)} (the cache itself), outside any emit`);
  overwrite(); // dies here: SIGSEGV, after vmpk's report on stderr
  console.log('attack: the write went through: the cache is NOT protected');
  process.exit(3);
}

cache.close();
rt.close();
process.exit(mismatches ? 1 : 0);
