// A tiny JIT for integer expressions: + - * /, parentheses, unary minus,
// integer literals and the variables x and y. parse() gives a tree,
// evaluate() the reference result in JavaScript (BigInt), compile() x86-64
// machine code in a vmpk code cache, callable as
//     int64_t f(int64_t x, int64_t y, int *divided_by_zero)
// Arithmetic wraps at 64 bits on both sides; x / 0 sets *divided_by_zero.

/** @typedef {{ op: 'num', value: bigint } | { op: 'var', name: 'x' | 'y' } | { op: 'neg', arg: Node } | { op: '+' | '-' | '*' | '/', left: Node, right: Node }} Node */

export const SIGNATURE = 'int64_t (int64_t x, int64_t y, _Out_ int *divided_by_zero)';

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

export class SyntaxError extends Error {}

/** @returns {Node} */
export function parse(text) {
  const tokens = text.match(/\s*(\d+|[xy]|[-+*/()]|\S)/g)?.map((t) => t.trim()) ?? [];
  let i = 0;
  const peek = () => tokens[i];
  const fail = (what) => {
    throw new SyntaxError(`${what} at token ${i + 1} of "${text}"${peek() === undefined ? ' (at the end)' : ` ("${peek()}")`}`);
  };
  const primary = () => {
    const t = tokens[i];
    if (t === undefined) fail('an operand is missing');
    i++;
    if (/^\d+$/.test(t)) {
      const value = BigInt(t);
      if (value > INT64_MAX) fail(`${t} does not fit in 64 bits`);
      return { op: 'num', value };
    }
    if (t === 'x' || t === 'y') return { op: 'var', name: t };
    if (t === '-') return { op: 'neg', arg: primary() };
    if (t === '(') {
      const e = sum();
      if (tokens[i++] !== ')') fail('")" expected');
      return e;
    }
    i--;
    return fail('an operand is expected');
  };
  const product = () => {
    let e = primary();
    while (peek() === '*' || peek() === '/') e = { op: tokens[i++], left: e, right: primary() };
    return e;
  };
  const sum = () => {
    let e = product();
    while (peek() === '+' || peek() === '-') e = { op: tokens[i++], left: e, right: product() };
    return e;
  };
  const tree = sum();
  if (i < tokens.length) fail('an operator is expected');
  return tree;
}

/** The reference: the same 64-bit wrapping arithmetic, in BigInt; null for a division by zero. */
export function evaluate(node, vars) {
  const wrap = (v) => BigInt.asIntN(64, v);
  switch (node.op) {
    case 'num':
      return node.value;
    case 'var':
      return wrap(BigInt(vars[node.name] ?? 0));
    case 'neg': {
      const a = evaluate(node.arg, vars);
      return a === null ? null : wrap(-a);
    }
    default: {
      const a = evaluate(node.left, vars);
      const b = evaluate(node.right, vars);
      if (a === null || b === null) return null;
      if (node.op === '/') return b === 0n ? null : wrap(a / b); // BigInt division truncates, as IDIV
      return wrap(node.op === '+' ? a + b : node.op === '-' ? a - b : a * b);
    }
  }
}

const le = (value, bytes) => Array.from({ length: bytes }, (_, k) => Number((BigInt.asUintN(bytes * 8, value) >> BigInt(8 * k)) & 0xffn));

// A constant whose bytes may hide a WRPKRU (0F 01 EF) is loaded as two
// halves XORed together when `split` asks for it: commit() refuses the
// plain form, and the compiler tries again (see compile()).
const SPLIT_MASK = 0x5a5a5a5a5a5a5a5an;

function loadConstant(value, split) {
  if (split) return [0x48, 0xb8, ...le(value ^ SPLIT_MASK, 8), 0x48, 0xb9, ...le(SPLIT_MASK, 8), 0x48, 0x31, 0xc8]; // movabs rax; movabs rcx; xor rax, rcx
  if (value >= -(2n ** 31n) && value < 2n ** 31n) return [0x48, 0xc7, 0xc0, ...le(value, 4)]; // mov rax, imm32 (sign-extended)
  return [0x48, 0xb8, ...le(value, 8)]; // movabs rax, imm64
}

/**
 * Emits `node` as one function into `cache`; returns the committed entry.
 * Throws vmpk's UNSAFE_CODE when the code holds a WRPKRU or XRSTOR byte
 * sequence (a constant's bytes can), unless `split` loads constants in two
 * halves.
 */
export function emitFunction(cache, node, { split = false } = {}) {
  return cache.emit((w) => {
    const divisionChecks = []; // offsets of the rel32 of each `jz error`
    w.write([0x49, 0x89, 0xe0]); // mov r8, rsp: the error exit unwinds to it
    w.write([0x49, 0x89, 0xd1]); // mov r9, rdx: divided_by_zero (cqo clobbers rdx)
    const gen = (n) => {
      switch (n.op) {
        case 'num':
          w.write(loadConstant(n.value, split));
          return;
        case 'var':
          w.write(n.name === 'x' ? [0x48, 0x89, 0xf8] : [0x48, 0x89, 0xf0]); // mov rax, rdi | rsi
          return;
        case 'neg':
          gen(n.arg);
          w.write([0x48, 0xf7, 0xd8]); // neg rax
          return;
      }
      gen(n.left);
      w.write([0x50]); // push rax
      gen(n.right);
      w.write([0x48, 0x89, 0xc1, 0x58]); // mov rcx, rax; pop rax
      switch (n.op) {
        case '+':
          w.write([0x48, 0x01, 0xc8]); // add rax, rcx
          break;
        case '-':
          w.write([0x48, 0x29, 0xc8]); // sub rax, rcx
          break;
        case '*':
          w.write([0x48, 0x0f, 0xaf, 0xc1]); // imul rax, rcx
          break;
        case '/':
          w.write([0x48, 0x85, 0xc9]); // test rcx, rcx
          divisionChecks.push(w.write([0x0f, 0x84, 0, 0, 0, 0]) + 2); // jz error (patched below)
          // INT64_MIN / -1 traps in IDIV: negate instead (it wraps, as in the reference)
          w.write([0x48, 0x83, 0xf9, 0xff, 0x75, 0x05, 0x48, 0xf7, 0xd8, 0xeb, 0x05]); // cmp rcx, -1; jne +5; neg rax; jmp +5
          w.write([0x48, 0x99, 0x48, 0xf7, 0xf9]); // cqo; idiv rcx
          break;
      }
    };
    gen(node);
    w.write([0xc3]); // ret
    const error = w.write([0x4c, 0x89, 0xc4, 0x41, 0xc7, 0x01, 0x01, 0x00, 0x00, 0x00, 0x31, 0xc0, 0xc3]); // mov rsp, r8; mov dword [r9], 1; xor eax, eax; ret
    for (const at of divisionChecks) w.patch(at, le(BigInt(error - (at + 4)), 4));
  });
}

/**
 * Compiles `node` into `cache` and returns { fn, entry, refused }: fn(x, y)
 * gives { value: bigint } or { value: null } for a division by zero.
 * `refused` is commit()'s UNSAFE_CODE error when the plain encoding was
 * refused and the constants had to be split.
 */
export function compile(cache, node) {
  let entry;
  let refused = null;
  try {
    entry = emitFunction(cache, node);
  } catch (err) {
    if (err?.code !== 'UNSAFE_CODE') throw err;
    refused = err;
    entry = emitFunction(cache, node, { split: true });
  }
  const native = cache.function(entry.offset, SIGNATURE);
  const fn = (x, y) => {
    const flag = [0];
    const r = native(BigInt(x), BigInt(y), flag);
    return { value: flag[0] ? null : BigInt(r) };
  };
  return { fn, entry, refused };
}

export { INT64_MIN, INT64_MAX };
