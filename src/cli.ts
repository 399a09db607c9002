// The vmpk command line: `vmpk inspect FILE...`, `vmpk inspect --self`,
// `vmpk doctor`, `vmpk build`.
// inspect's exit status: 0 when no occurrence is unsafe (after the baseline),
// 1 when one is, 2 on bad usage or a file that cannot be read as a 64-bit
// little-endian ELF file.
import { writeFileSync } from 'node:fs';
import { type Baseline, makeBaseline, matcher, readBaseline } from './baseline.js';
import { doctor, formatDoctor } from './doctor.js';
import { type InspectReport, type Occurrence, type Verdict, inspectFile, inspectProcess } from './inspect/index.js';
import { buildFromSource, platformTag } from './library.js';

const USAGE = `usage: vmpk inspect [--json] [--baseline FILE | --write-baseline FILE] FILE...
       vmpk inspect [--json] [--baseline FILE | --write-baseline FILE] --self
       vmpk doctor [--json]
       vmpk build

inspect: scans ELF files (their executable segments) or this process's
executable mappings for WRPKRU (0F 01 EF) and XRSTOR (0F AE /5, memory
operand) byte sequences at every byte offset, and gives each a verdict:
vmpk-gate, known-wrapper or unsafe. Exit status: 0 if none is unsafe, 1 if
one is, 2 on bad usage or an unreadable file.
  A stock node binary has such byte runs inside its own instructions (not
  executable as a WRPKRU/XRSTOR unless control flow is hijacked onto them),
  so \`vmpk inspect --self\` exits 1 there. After reviewing them, accept them
  for that binary: \`vmpk inspect --self --write-baseline vmpk-baseline.json\`,
  then \`vmpk inspect --self --baseline vmpk-baseline.json\` reports them as
  'accepted' and exits 0. Entries name the binary's ELF build id: a new node
  build matches none of them. See docs/security.md.

doctor: what vmpk would do here (backend and why, CPU pku/ospke, kernel,
protection keys, seccomp and hardened mode, vm.max_map_count, io_uring, the
library loaded). Exit status: 0 the pku backend works, 3 only the mprotect
backend, 1 vmpk cannot open a runtime.

build: builds the native library from source (make and a C compiler) into
the package's native/build/, which is then preferred over the prebuilt one.`;

export interface CliIO {
  out: (line: string) => void;
  err: (line: string) => void;
}

const VERDICTS: Verdict[] = ['vmpk-gate', 'known-wrapper', 'unsafe'];

const STDIO: CliIO = { out: (l) => process.stdout.write(l + '\n'), err: (l) => process.stderr.write(l + '\n') };

async function doctorMain(rest: string[], io: CliIO): Promise<number> {
  const json = rest.includes('--json');
  const bad = rest.find((a) => a !== '--json');
  if (bad !== undefined) {
    io.err(`vmpk doctor: unknown argument '${bad}'\n${USAGE}`);
    return 2;
  }
  const r = await doctor();
  if (json) io.out(JSON.stringify(r, null, 2));
  else for (const line of formatDoctor(r)) io.out(line);
  return r.status;
}

function buildMain(rest: string[], io: CliIO): number {
  if (rest.length) {
    io.err(`vmpk build: takes no arguments\n${USAGE}`);
    return 2;
  }
  try {
    io.out(`vmpk: built ${buildFromSource('inherit')} from source for ${platformTag()}`);
    return 0;
  } catch (err) {
    io.err((err as Error).message);
    return 1;
  }
}

/** Runs the CLI; returns the exit status (a promise for doctor). */
export function main(argv: string[], io: CliIO = STDIO): number | Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    io.out(USAGE);
    return 0;
  }
  if (cmd === 'doctor') return doctorMain(rest, io);
  if (cmd === 'build') return buildMain(rest, io);
  if (cmd !== 'inspect') {
    io.err(cmd === undefined ? USAGE : `vmpk: unknown command '${cmd}'\n${USAGE}`);
    return 2;
  }
  let json = false;
  let self = false;
  let baselinePath: string | undefined;
  let writePath: string | undefined;
  const files: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--baseline' || a === '--write-baseline') {
      const v = rest[++i];
      if (v === undefined) {
        io.err(`vmpk inspect: ${a} needs a FILE\n${USAGE}`);
        return 2;
      }
      if (a === '--baseline') baselinePath = v;
      else writePath = v;
    } else if (a === '--json') json = true;
    else if (a === '--self') self = true;
    else if (a === '--help' || a === '-h') {
      io.out(USAGE);
      return 0;
    } else if (a.startsWith('-') && a !== '-') {
      io.err(`vmpk: unknown option '${a}'\n${USAGE}`);
      return 2;
    } else files.push(a);
  }
  if (self === (files.length > 0)) {
    io.err(`vmpk inspect: give FILE... or --self (one of them)\n${USAGE}`);
    return 2;
  }
  if (baselinePath !== undefined && writePath !== undefined) {
    io.err(`vmpk inspect: give --baseline or --write-baseline, not both\n${USAGE}`);
    return 2;
  }
  let baseline: Baseline | undefined;
  if (baselinePath !== undefined) {
    try {
      baseline = readBaseline(baselinePath);
    } catch (err) {
      io.err(`vmpk inspect: ${baselinePath}: ${(err as Error).message}`);
      return 2;
    }
  }
  const reports: InspectReport[] = [];
  if (self) reports.push(inspectProcess());
  else {
    for (const f of files) {
      try {
        reports.push(inspectFile(f));
      } catch (err) {
        io.err(`vmpk inspect: ${f}: ${(err as Error).message}`);
        return 2;
      }
    }
  }
  const all: InspectReport = { occurrences: [], skipped: [], bytes: 0, counts: { 'vmpk-gate': 0, 'known-wrapper': 0, unsafe: 0 } };
  for (const r of reports) {
    all.occurrences.push(...r.occurrences);
    all.skipped.push(...r.skipped);
    all.bytes += r.bytes;
    for (const v of VERDICTS) all.counts[v] += r.counts[v];
  }
  if (writePath !== undefined) {
    const { baseline: b, refused } = makeBaseline(all.occurrences.filter((o) => o.verdict === 'unsafe'));
    writeFileSync(writePath, JSON.stringify(b, null, 2) + '\n');
    io.out(`vmpk inspect: wrote ${writePath}: ${b.entries.length} unsafe occurrence(s) accepted for their binaries' build ids`);
    for (const o of refused) io.err(`vmpk inspect: cannot accept ${o.module} 0x${o.offset.toString(16)}: the module has no ELF build id`);
    return refused.length ? 1 : 0;
  }
  // Accepted: unsafe occurrences that the baseline lists for the same binary.
  const accepted: Occurrence[] = [];
  if (baseline !== undefined) {
    const inBaseline = matcher(baseline);
    for (const o of all.occurrences) {
      if (o.verdict === 'unsafe' && inBaseline(o)) accepted.push(o);
    }
    all.counts.unsafe -= accepted.length;
  }
  const isAccepted = new Set(accepted);
  if (json) {
    io.out(JSON.stringify(baseline === undefined ? all : { ...all, accepted: accepted.length }, null, 2));
  } else {
    for (const o of all.occurrences) {
      const where = o.symbol ? ` ${o.symbol}` : '';
      const verdict = isAccepted.has(o) ? 'accepted' : o.verdict;
      io.out(`${o.module}\t0x${o.offset.toString(16)}\t${o.kind}${o.rexW ? '64' : ''}\t${verdict}\t${o.reason}${where && !o.reason.includes(o.symbol!) ? ` (${o.symbol})` : ''}`);
    }
    for (const s of all.skipped) io.out(`skipped\t${s.module}${s.address !== undefined ? `@0x${s.address.toString(16)}` : ''}\t${s.reason}`);
    io.out(`summary: ${VERDICTS.map((v) => `${v} ${all.counts[v]}`).join(', ')}${baseline !== undefined ? `, accepted ${accepted.length} (baseline ${baselinePath})` : ''}; ${all.bytes} executable bytes scanned, ${all.skipped.length} mapping(s) skipped`);
    if (all.counts.unsafe > 0 && baseline === undefined && self) {
      io.out('(a stock node has such byte runs inside its own instructions: see `vmpk --help` on --write-baseline)');
    }
  }
  return all.counts.unsafe > 0 ? 1 : 0;
}
