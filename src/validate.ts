// Argument checking, all of it in JavaScript, with exact messages, so the
// native core only ever receives clean values.
import { describe, invalidArgument } from './errors.js';

/** Options objects: undefined or a plain object. Returns {} for undefined. */
export function checkOptionsObject(value: unknown, where: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidArgument(`${where}: options must be an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

function normalize(name: string): string {
  return name.toLowerCase().replace(/[-_\s]/g, '');
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

/**
 * Rejects option names that are not in `known`, with a hint for near-misses:
 * `aliases` maps likely misspellings (normalized: lower case, no '_' or '-')
 * to the right name; otherwise the closest known name within a small edit
 * distance is suggested.
 */
export function rejectUnknownOptions(
  options: Record<string, unknown>,
  known: readonly string[],
  where: string,
  aliases: Readonly<Record<string, string>> = {},
): void {
  for (const name of Object.keys(options)) {
    if (known.includes(name)) continue;
    const n = normalize(name);
    let suggestion = aliases[n] ?? known.find((k) => normalize(k) === n);
    if (suggestion === undefined) {
      let best = Infinity;
      for (const k of known) {
        const d = editDistance(n, normalize(k));
        if (d < best && d <= Math.max(2, Math.floor(k.length / 4))) {
          best = d;
          suggestion = k;
        }
      }
    }
    const hint = suggestion !== undefined ? `; did you mean '${suggestion}'?` : `; valid options are ${known.map((k) => `'${k}'`).join(', ')}`;
    throw invalidArgument(`${where}: unknown option '${name}'${hint}`);
  }
}

/**
 * An integer from min to max (both inclusive, both safe integers). NaN,
 * Infinity, fractions, -0 is accepted as 0 only when min <= 0.
 */
export function checkInteger(value: unknown, what: string, where: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const kind =
      typeof value === 'bigint'
        ? ' (a bigint: pass a number)'
        : typeof value === 'number' && !Number.isFinite(value)
          ? ''
          : typeof value === 'number' && !Number.isInteger(value)
            ? ' (not an integer)'
            : typeof value === 'number' && value > Number.MAX_SAFE_INTEGER
              ? ' (above 2 ** 53 - 1, beyond exact integers)'
              : '';
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer of at least ${min}` : `an integer from ${min} to ${max}`;
    throw invalidArgument(`${where}: ${what} must be ${range}, got ${describe(value)}${kind}`);
  }
  return value === 0 ? 0 : value;
}

export function checkBoolean(value: unknown, what: string, where: string): boolean {
  if (typeof value !== 'boolean') throw invalidArgument(`${where}: ${what} must be true or false, got ${describe(value)}`);
  return value;
}

export function checkFunction(value: unknown, what: string, where: string): (...args: never[]) => unknown {
  if (typeof value !== 'function') throw invalidArgument(`${where}: ${what} must be a function, got ${describe(value)}`);
  return value as (...args: never[]) => unknown;
}

const StringPrototypeCharCodeAt = Function.prototype.call.bind(String.prototype.charCodeAt) as (s: string, i: number) => number;

/**
 * What a name may not contain, as a phrase, or undefined for a clean name:
 * it is printed on one line of a fault report and read by people, so no
 * C0 or C1 control character, DEL, line or paragraph separator, bidi
 * override, embedding or isolate (which reorder what follows them), and no
 * lone surrogate (not text). A loop over UTF-16 units: nothing that other
 * code could replace (a RegExp method, say) decides it.
 */
export function badNameCharacter(value: string): string | undefined {
  const n = value.length;
  for (let i = 0; i < n; i++) {
    const c = StringPrototypeCharCodeAt(value, i);
    const at = `at index ${i} (U+${c.toString(16).toUpperCase().padStart(4, '0')})`;
    if (c < 0x20 || c === 0x7f) return `a control character ${at}`;
    if (c >= 0x80 && c <= 0x9f) return `a C1 control character ${at}`;
    if (c === 0x2028 || c === 0x2029) return `a line or paragraph separator ${at}`;
    if ((c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069) || c === 0x200e || c === 0x200f || c === 0x061c) return `a bidirectional formatting character ${at}`;
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = i + 1 < n ? StringPrototypeCharCodeAt(value, i + 1) : 0;
      if (d >= 0xdc00 && d <= 0xdfff) {
        i++;
        continue;
      }
      return `a lone surrogate ${at}`;
    }
    if (c >= 0xdc00 && c <= 0xdfff) return `a lone surrogate ${at}`;
  }
  return undefined;
}
