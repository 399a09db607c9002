#!/usr/bin/env node
// The `vmpk` command (package.json "bin"): see `vmpk --help` and docs/security.md.
import { main } from '../dist/cli.js';

process.exitCode = await main(process.argv.slice(2));
