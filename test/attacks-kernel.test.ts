// Attacks through the kernel and through thread births (docs/security.md,
// the rows after "Kernel paths and thread births"), each asserting the
// outcome the table claims. The attacker is native/build/attack
// (test/fixtures/attacks/attack.c) and, for the Worker variant,
// test/fixtures/worker-birth.mjs; one attack per child process. Where the
// hardened mode is the answer, the same attack also runs without it and
// must succeed there. pku backend only: the guest.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { onPku } from './helpers/vmpk.js';

const attacker = fileURLToPath(new URL('../native/build/attack', import.meta.url));
const workerBirth = fileURLToPath(new URL('./fixtures/worker-birth.mjs', import.meta.url));

interface Outcome {
  lines: Record<string, string>;
  stderr: string;
  status: number | null;
  signal: NodeJS.Signals | null;
}

function parse(child: ReturnType<typeof spawnSync>): Outcome {
  const lines: Record<string, string> = {};
  for (const line of String(child.stdout).split('\n')) {
    const m = /^(\w+): (.*)$/.exec(line);
    if (m) lines[m[1]!] = m[2]!;
  }
  return { lines, stderr: String(child.stderr), status: child.status, signal: child.signal };
}

/** The children's environment: pku, and hardened only where the test says (not by VMPK_HARDEN). */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, VMPK_BACKEND: 'pku' };
  delete env['VMPK_HARDEN'];
  return env;
}

function attack(name: string, harden: boolean): Outcome {
  if (!existsSync(attacker)) throw new Error(`${attacker} is missing: run \`make -C native attack\` (make test builds it)`);
  return parse(spawnSync(attacker, harden ? [name, 'harden'] : [name], { encoding: 'utf8', env: childEnv(), timeout: 120_000 }));
}

function expectOutcome(o: Outcome, expected: Record<string, string>): void {
  expect(o.signal, o.stderr).toBe(null);
  expect(o.status, o.stderr).toBe(0);
  expect(o.lines['open']).toBe('ok');
  for (const [k, v] of Object.entries(expected)) expect(o.lines[k], `${k} in ${JSON.stringify(o.lines)}`).toBe(v);
}

describe.skipIf(!onPku)('attacks-kernel (pku backend): kernel paths the hardened filter closes', () => {
  const cases: Array<[name: string, unhardened: Record<string, string>, hardened: Record<string, string>]> = [
    // The ring's MADV_DONTNEED wipes the region, where plain madvise gets EPERM hardened.
    ['io_uring-madvise', { call: 'ok', op: 'ok', secret: 'hidden', content: 'changed' }, { call: 'EPERM', secret: 'hidden', content: 'intact' }],
    // The SQPOLL kernel thread, set up inside a gate, copied its PKRU: after
    // the gate it writes the region into a pipe for anyone who submits.
    ['io_uring-sqpoll', { call: 'ok', op: 'ok', leaked: 'yes', secret: 'hidden', content: 'intact' }, { call: 'EPERM', leaked: 'no', secret: 'hidden', content: 'intact' }],
    // UFFDIO_COPY fills the untouched second page with the attacker's bytes.
    ['userfaultfd', { call: 'ok', op: 'ok', content: 'intact', page2: 'forged' }, { call: 'EPERM', content: 'intact', page2: 'zero' }],
    ['userfaultfd-dev', { call: 'ok', op: 'ok', content: 'intact', page2: 'forged' }, { call: 'EPERM', content: 'intact', page2: 'zero' }],
    // A pipe's page reference, taken while the key was readable, reads the
    // secret written after protect('none').
    ['vmsplice', { call: 'ok', leaked: 'yes', secret: 'hidden', content: 'intact' }, { call: 'EPERM', leaked: 'no', secret: 'hidden', content: 'intact' }],
  ];

  it.each(cases)('%s: works without harden, EPERM with it', (name, unhardened, hardened) => {
    const plain = attack(name, false);
    if (name === 'userfaultfd-dev' && plain.lines['call'] === 'nodev') return; // kernel < 6.1: no /dev/userfaultfd
    expectOutcome(plain, unhardened);
    expectOutcome(attack(name, true), hardened);
  });
});

describe.skipIf(!onPku)('attacks-kernel (pku backend): a thread born inside a gate', () => {
  // Without harden, births are seen through glibc's count of live threads:
  // a birth and an exit in one gate cancel out, a raw clone is not counted.
  // Hardened, every thread clone is counted before it happens, and the
  // gate's end takes the copied bits back by shootdown.
  it('pthread_create inside a gate while another thread exits: the new thread reads the key after the gate without harden; hidden hardened', () => {
    expectOutcome(attack('birth-exit', false), { call: 'ok', thread: 'exposed', leaked: 'yes', secret: 'hidden', content: 'intact' });
    expectOutcome(attack('birth-exit', true), { call: 'ok', thread: 'hidden', leaked: 'no', secret: 'hidden', content: 'intact' });
  });

  it('a raw clone (a thread glibc never sees) inside a gate: reads the key after the gate without harden; hidden hardened', () => {
    expectOutcome(attack('raw-clone', false), { call: 'ok', thread: 'exposed', leaked: 'yes', secret: 'hidden', content: 'intact' });
    expectOutcome(attack('raw-clone', true), { call: 'ok', thread: 'hidden', leaked: 'no', secret: 'hidden', content: 'intact' });
  });

  it('JavaScript only: a Worker started inside key.with() while another Worker ends reads the key without harden; hidden hardened', () => {
    const run = (harden: boolean): Outcome =>
      parse(
        spawnSync(process.execPath, harden ? [workerBirth, 'harden'] : [workerBirth], {
          encoding: 'utf8',
          env: childEnv(),
          timeout: 300_000,
        }),
      );
    const plain = run(false);
    expect(plain.status, plain.stderr).toBe(0);
    expect(plain.lines).toEqual({ thread: 'exposed', leaked: 'yes' });
    const hardened = run(true);
    expect(hardened.status, hardened.stderr).toBe(0);
    expect(hardened.lines).toEqual({ thread: 'hidden', leaked: 'no' });
  });
});

describe.skipIf(!onPku)('attacks-kernel (pku backend): not stopped and not detected, even hardened', () => {
  // A foreign WRPKRU, or a signal frame's PKRU, that opens vmpk's keys and
  // then puts the old value back before the thread's next vmpk call: the
  // checks compare PKRU at vmpk's own calls, so nothing sees a difference.
  it('WRPKRU 0, a read, WRPKRU back: the secret leaks and the process goes on', () => {
    expectOutcome(attack('wrpkru-restore', true), { call: 'ok', leaked: 'yes', secret: 'hidden', content: 'intact' });
  });

  it("a signal frame's PKRU set to 0, a read, a second frame's set back: the secret leaks and the process goes on", () => {
    expectOutcome(attack('sigreturn-restore', true), { call: 'ok', leaked: 'yes', secret: 'hidden', content: 'intact' });
  });
});
