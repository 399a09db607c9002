#!/usr/bin/env node
// The `vmpk` command (package.json "bin"): see `vmpk --help` and docs/security.md.
import { main } from '../dist/cli.js';

// `vmpk doctor | head`: a closed pipe ends the output, not with a stack trace.
process.stdout.on('error', (err) => {
  if (err.code !== 'EPIPE') throw err;
});

process.exitCode = await main(process.argv.slice(2));
