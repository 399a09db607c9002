// The native core's layering (scripts/check-layers.mjs): every include and call
// points down the folder tree, no cycle beyond the debt that
// scripts/check-layers.known lists, and docs/design.md draws the tree as it is.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('../scripts/check-layers.mjs', import.meta.url));

describe('native layers', () => {
  it('has no upward edge, no new cycle, and design.md draws the tree', () => {
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8' });
    expect(r.stdout.split('\n').filter((l) => l.startsWith('FAIL'))).toEqual([]);
    expect(r.stdout).toContain('layers: ok');
    expect(r.status).toBe(0);
  });
});
