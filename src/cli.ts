// The vmpk command line: `vmpk inspect FILE...`, `vmpk inspect --self`.
// Exit status: 0 when no occurrence is unsafe, 1 when one is, 2 on bad usage
// or a file that cannot be read as a 64-bit little-endian ELF file.
import { type InspectReport, type Verdict, inspectFile, inspectProcess } from './inspect/index.js';

const USAGE = `usage: vmpk inspect [--json] FILE...
       vmpk inspect [--json] --self

Scans ELF files (their executable segments) or this process's executable
mappings for WRPKRU (0F 01 EF) and XRSTOR (0F AE /5, memory operand) byte
sequences at every byte offset, and gives each a verdict: vmpk-gate,
known-wrapper or unsafe. Exit status: 0 if none is unsafe, 1 if one is,
2 on bad usage or an unreadable file.`;

export interface CliIO {
  out: (line: string) => void;
  err: (line: string) => void;
}

const VERDICTS: Verdict[] = ['vmpk-gate', 'known-wrapper', 'unsafe'];

/** Runs the CLI; returns the exit status. */
export function main(argv: string[], io: CliIO = { out: (l) => process.stdout.write(l + '\n'), err: (l) => process.stderr.write(l + '\n') }): number {
  const [cmd, ...rest] = argv;
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    io.out(USAGE);
    return 0;
  }
  if (cmd !== 'inspect') {
    io.err(cmd === undefined ? USAGE : `vmpk: unknown command '${cmd}'\n${USAGE}`);
    return 2;
  }
  let json = false;
  let self = false;
  const files: string[] = [];
  for (const a of rest) {
    if (a === '--json') json = true;
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
  if (json) {
    io.out(JSON.stringify(all, null, 2));
  } else {
    for (const o of all.occurrences) {
      const where = o.symbol ? ` ${o.symbol}` : '';
      io.out(`${o.module}\t0x${o.offset.toString(16)}\t${o.kind}${o.rexW ? '64' : ''}\t${o.verdict}\t${o.reason}${where && !o.reason.includes(o.symbol!) ? ` (${o.symbol})` : ''}`);
    }
    for (const s of all.skipped) io.out(`skipped\t${s.module}${s.address !== undefined ? `@0x${s.address.toString(16)}` : ''}\t${s.reason}`);
    io.out(`summary: ${VERDICTS.map((v) => `${v} ${all.counts[v]}`).join(', ')}; ${all.bytes} executable bytes scanned, ${all.skipped.length} mapping(s) skipped`);
  }
  return all.counts.unsafe > 0 ? 1 : 0;
}
