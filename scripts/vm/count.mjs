#!/usr/bin/env node
// Counts test results from manifests (written by scripts/vm/suites.sh in the
// guest and by .ci/run on the host). Prints a line per suite, a line per
// manifest, and last a plain "N passed, N failed" line. Exits 1 if anything
// failed.
//
//   node scripts/vm/count.mjs MANIFEST...
//
// A manifest is tab-separated text:
//   #label  host                 what its lines are called
//   #skips  fail                 "fail" where PKU is promised (the guest): a skip is a failure
//   NAME    KIND    STATUS  FILE one line per suite; a later line for NAME replaces an earlier one
// KIND   text:   FILE is the suite's output; its last "[LABEL: ]N passed, N failed[, N skipped]"
//                line counts (skips may come on a "LABEL skipped: N" line before it)
//        vitest: FILE is vitest's JSON report (--reporter=json --outputFile.json=FILE)
//        exit:   a whole run's exit status (no FILE): if any is non-zero and nothing
//                else in the manifest failed, that counts as one failure
// STATUS the exit status: 0 ok, 77 skipped (no PKU), other failed; "-" not known
//        separately; "?" started and never finished.
import { existsSync, readFileSync } from 'node:fs';

const EXIT_SKIP = '77';
const SUMMARY = /^(?:([^:]*): )?(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$/;
const SKIPS = /^(.*) skipped: (\d+)$/;
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;

// A "LABEL skipped: N" line gives the skips of a "LABEL: N passed, N failed"
// line that follows it (test/c/run.sh writes both).
function countText(file) {
  let counts = null;
  let skips = null;
  for (const raw of readFileSync(file, 'utf8').replace(ANSI, '').split('\n')) {
    const line = raw.trim();
    const m = SUMMARY.exec(line);
    const s = SKIPS.exec(line);
    if (s) skips = { label: s[1], n: +s[2] };
    if (!m) continue;
    const skipped = m[4] ?? (skips && skips.label === (m[1] ?? '') ? skips.n : 0);
    counts = { passed: +m[2], failed: +m[3], skipped: +skipped };
  }
  return counts;
}

function countVitest(file) {
  const report = JSON.parse(readFileSync(file, 'utf8'));
  const counts = { passed: 0, failed: 0, skipped: 0 };
  for (const mod of report.testResults ?? []) {
    let failedHere = 0;
    for (const test of mod.assertionResults ?? []) {
      if (test.status === 'passed') counts.passed++;
      else if (test.status === 'failed') failedHere++;
      else counts.skipped++; // skipped, pending, todo
    }
    // A file can fail outside any test (import error, failing hook).
    counts.failed += mod.status === 'failed' ? Math.max(failedHere, 1) : failedHere;
  }
  return counts;
}

function readManifest(path) {
  const manifest = { label: path, skipsFail: false, suites: new Map() };
  if (!existsSync(path)) return manifest;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const [name, kind, status, file] = line.split('\t');
    if (name === '#label') manifest.label = kind;
    else if (name === '#skips') manifest.skipsFail = kind === 'fail';
    else manifest.suites.set(name, { name, kind, status, file });
  }
  return manifest;
}

// Counts one suite: { passed, failed, skipped, extra, notes }, where `extra`
// are failures that no test reported (a crash, a missing report, a skip
// where PKU is promised).
function judge(suite, skipsFail) {
  const notes = [];
  let counts = null;
  if (suite.kind === 'text' || suite.kind === 'vitest') {
    try {
      if (existsSync(suite.file)) counts = suite.kind === 'text' ? countText(suite.file) : countVitest(suite.file);
      else notes.push('no report');
    } catch (err) {
      notes.push(`unreadable report (${err.message})`);
    }
  } else {
    notes.push(`unknown kind '${suite.kind}'`);
  }
  const result = { passed: 0, failed: 0, skipped: 0, ...counts, extra: 0, notes };
  if (suite.status === '?') {
    result.extra++;
    notes.push('did not finish');
  } else if (suite.status === EXIT_SKIP && result.skipped === 0) {
    result.skipped = 1;
    notes.push('skipped (exit status 77)');
  } else if (suite.status !== '-' && suite.status !== '0' && suite.status !== EXIT_SKIP && result.failed === 0) {
    result.extra++;
    notes.push(`exited with status ${suite.status}`);
  }
  if (!counts && !notes.length) notes.push('no tests reported');
  if (skipsFail && result.skipped > 0) {
    result.extra += result.skipped;
    notes.push('skips count as failures here');
  }
  return result;
}

const total = { passed: 0, failed: 0 };
for (const path of process.argv.slice(2)) {
  const manifest = readManifest(path);
  const group = { passed: 0, failed: 0, skipped: 0, extra: 0 };
  if (![...manifest.suites.values()].some((s) => s.kind !== 'exit')) {
    group.extra++;
    console.log(`${manifest.label}: no suite results in ${path}`);
  }
  const badExits = [];
  for (const suite of manifest.suites.values()) {
    if (suite.kind === 'exit') {
      if (suite.status !== '0') badExits.push(`${suite.name} exited with status ${suite.status}`);
      continue;
    }
    const r = judge(suite, manifest.skipsFail);
    const notes = r.notes.length ? ` (${r.notes.join('; ')})` : '';
    console.log(`${manifest.label} ${suite.name}: ${r.passed} passed, ${r.failed + r.extra} failed, ${r.skipped} skipped${notes}`);
    for (const key of Object.keys(group)) group[key] += r[key];
  }
  if (badExits.length) {
    console.log(`${manifest.label}: ${badExits.join('; ')}`);
    if (group.failed + group.extra === 0) group.extra++;
  }
  const failed = group.failed + group.extra;
  console.log(`${manifest.label}: ${group.passed + group.failed} tests ran (${group.passed} passed, ${group.failed} failed), ` +
    `${group.skipped} skipped${group.extra ? `; ${group.extra} more counted as failed (see above)` : ''}`);
  total.passed += group.passed;
  total.failed += failed;
}
console.log(`${total.passed} passed, ${total.failed} failed`);
process.exit(total.failed ? 1 : 0);
