// The fault tests run fixtures in child processes with plain `node`, which
// import the compiled package (dist/). Compile it when src/ is newer.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

function distIsStale(): boolean {
  for (const f of readdirSync(join(root, 'src'))) {
    if (!f.endsWith('.ts')) continue;
    const out = join(root, 'dist', f.replace(/\.ts$/, '.js'));
    if (!existsSync(out) || statSync(out).mtimeMs < statSync(join(root, 'src', f)).mtimeMs) return true;
  }
  return false;
}

export default function setup(): void {
  if (!distIsStale()) return;
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  try {
    execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { cwd: root, stdio: 'inherit' });
  } catch (err) {
    throw new Error(`test setup: compiling src/ to dist/ for the fault fixtures failed (run \`npm run build\` first where the tree is read-only): ${(err as Error).message}`);
  }
}
