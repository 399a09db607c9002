// /proc/<pid>/maps lines: address range, permissions, file offset, device,
// inode and the path or pseudo-name ([vdso], [anon:...], empty for anonymous).

export interface Mapping {
  start: number;
  end: number;
  perms: string;
  offset: number;
  inode: number;
  /** Path, a pseudo-name like [vdso], or '' for anonymous memory. */
  name: string;
}

export function parseMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+)\s+(\S{4})\s+([0-9a-f]+)\s+\S+\s+(\d+)\s*(.*)$/.exec(line);
    if (!m) continue;
    out.push({
      start: parseInt(m[1]!, 16),
      end: parseInt(m[2]!, 16),
      perms: m[3]!,
      offset: parseInt(m[4]!, 16),
      inode: Number(m[5]),
      name: m[6]!.trim(),
    });
  }
  return out;
}

/** File-backed: a path and an inode (not [vdso], [anon:..] or anonymous). */
export function isFileBacked(m: Mapping): boolean {
  return m.inode !== 0 && m.name.startsWith('/');
}
