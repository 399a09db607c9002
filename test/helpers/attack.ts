// The attacker binary of the attack suites (test/fixtures/attacks/attack.c):
// one attack per child process, whose "name: value" lines say what happened.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { backend } from './vmpk.js';

export const attacker = fileURLToPath(new URL('../../native/build/attack', import.meta.url));

export interface Outcome {
  lines: Record<string, string>;
  stdout: string;
  stderr: string;
  status: number | null;
  signal: NodeJS.Signals | null;
}

/** Runs `attack ARGS...` with VMPK_BACKEND as the suite's, plus extra variables. */
export function runAttacker(args: string[], extra: Record<string, string> = {}): Outcome {
  if (!existsSync(attacker)) throw new Error(`${attacker} is missing: run \`make -C native attack\` (make test builds it)`);
  const env = { ...process.env, VMPK_BACKEND: backend, ...extra };
  const child = spawnSync(attacker, args, { encoding: 'utf8', env, timeout: 120_000 });
  const lines: Record<string, string> = {};
  for (const line of child.stdout.split('\n')) {
    const m = /^(\w+): (.*)$/.exec(line);
    if (m) lines[m[1]!] = m[2]!;
  }
  return { lines, stdout: child.stdout, stderr: child.stderr, status: child.status, signal: child.signal };
}
