// Builds native/build/libvmpk.so with make (incremental). A consumer without a
// compiler keeps the library that the published package ships.
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const lib = join(root, 'native', 'build', 'libvmpk.so');
try {
  execFileSync('make', ['-s', '-C', join(root, 'native'), 'lib'], { stdio: 'inherit' });
} catch (err) {
  if (existsSync(lib)) {
    console.warn(`vmpk: rebuilding the native library failed (${err.message}); using the shipped build`);
  } else {
    console.error('vmpk: building the native library failed; it needs make and a C compiler (apt-get install build-essential)');
    process.exit(1);
  }
}
