// Draws bench/regions.mjs's results as an SVG: hit rate and syscalls per
// gate against the number of vkeys (log x axis), one line per backend and
// order. No dependencies: the SVG is written by hand.
//
//   node bench/chart.mjs [--out docs/regions.svg] [RESULT.json ...]
//
// Default input: bench/build/results/regions-stub.json (or regions.json /
// regions-real.json, whichever exist), and the guest's
// bench/build/vm/regions-real.json when it is there (drawn dashed).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUILD, ROOT } from './lib.mjs';

const W = 760;
const PANEL = { w: 300, h: 200, top: 48 };
const LEFTS = [70, 440];
const COLORS = { pku: '#1f6fb4', mprotect: '#d2691e' };
const DASH = { zipf: '', uniform: '6 4' };

function esc(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function label(n) {
  return n >= 1e6 ? `${n / 1e6}M` : n >= 1e3 ? `${n / 1e3}k` : String(n);
}

/** One line per (source, backend, order): [{ x: vkeys, hit, syscalls }]. */
function buildOf(res) {
  return res.stubbed ? 'stub' : res.machine.includes('TCG') ? 'guest' : 'real';
}

function seriesOf(results) {
  const out = [];
  for (const res of results) {
    const build = buildOf(res);
    const backends = [...new Set(res.rows.map((r) => r.backend))];
    for (const backend of backends) {
      for (const order of ['zipf', 'uniform']) {
        const points = res.rows
          .filter((r) => r.backend === backend)
          .map((r) => ({ x: r.vkeys, hit: r.orders[order].hitRate, syscalls: r.orders[order].syscalls, hw: r.hwKeysHeld ?? r.hardwareKeys }));
        const hw = backend === 'pku' ? `, ${points[0].hw} hw keys` : '';
        const where = backend === 'pku' ? ` (${build}${hw})` : ` (${build === 'guest' ? 'guest' : 'host'})`;
        const name = `${backend}${where}, ${order === 'zipf' ? `Zipf(${res.zipfS})` : 'uniform'}`;
        out.push({ name, backend, order, guest: build === 'guest', points });
      }
    }
  }
  return out;
}

function panel(left, title, series, field, yMax, yTicks, xs) {
  const { w, h, top } = PANEL;
  const lx = Math.log10(Math.min(...xs));
  const hx = Math.log10(Math.max(...xs));
  const px = (x) => left + ((Math.log10(x) - lx) / (hx - lx || 1)) * w;
  const py = (y) => top + h - (y / yMax) * h;
  const parts = [`<text x="${left + w / 2}" y="${top - 12}" text-anchor="middle" font-weight="bold">${esc(title)}</text>`];
  parts.push(`<rect x="${left}" y="${top}" width="${w}" height="${h}" fill="none" stroke="#999"/>`);
  for (const t of yTicks) {
    parts.push(`<line x1="${left}" x2="${left + w}" y1="${py(t)}" y2="${py(t)}" stroke="#e4e4e4"/>`);
    parts.push(`<text x="${left - 6}" y="${py(t) + 4}" text-anchor="end">${t}</text>`);
  }
  for (let p = Math.ceil(lx); p <= Math.floor(hx); p++) {
    const x = px(10 ** p);
    parts.push(`<line x1="${x}" x2="${x}" y1="${top}" y2="${top + h}" stroke="#e4e4e4"/>`);
    parts.push(`<text x="${x}" y="${top + h + 16}" text-anchor="middle">${label(10 ** p)}</text>`);
  }
  parts.push(`<text x="${left + w / 2}" y="${top + h + 34}" text-anchor="middle">vkeys (log scale), one region each</text>`);
  for (const s of series) {
    const pts = s.points.map((p) => `${px(p.x).toFixed(1)},${py(p[field]).toFixed(1)}`).join(' ');
    const color = COLORS[s.backend];
    const width = s.guest ? 1.5 : 2.5;
    parts.push(`<polyline points="${pts}" fill="none" stroke="${color}" stroke-width="${width}" stroke-dasharray="${DASH[s.order]}"/>`);
    for (const p of s.points) {
      const [cx, cy] = [px(p.x).toFixed(1), py(p[field]).toFixed(1)];
      parts.push(s.order === 'zipf' ? `<circle cx="${cx}" cy="${cy}" r="3.5" fill="${color}"/>` : `<rect x="${cx - 3.5}" y="${cy - 3.5}" width="7" height="7" fill="white" stroke="${color}" stroke-width="1.5"/>`);
    }
  }
  return parts.join('\n');
}

export function chart(results) {
  const series = seriesOf(results);
  const xs = series.flatMap((s) => s.points.map((p) => p.x));
  // Headroom above the highest point, so no line runs along the frame.
  const maxSys = Math.max(...series.flatMap((s) => s.points.map((p) => p.syscalls)));
  const sysMax = Math.max(0.5, Math.ceil(maxSys * 1.1 * 2) / 2);
  const maxHit = Math.max(...series.flatMap((s) => s.points.map((p) => p.hit)));
  const hitMax = Math.min(1, Math.max(0.1, Math.ceil(maxHit * 1.2 * 10) / 10));
  const ticks = (max, step) => Array.from({ length: Math.round(max / step) + 1 }, (_, i) => +(i * step).toFixed(2));
  const sysTicks = ticks(sysMax, 0.5);
  const hitTicks = ticks(hitMax, hitMax > 0.5 ? 0.25 : 0.1);
  const first = results[0];
  const legendTop = PANEL.top + PANEL.h + 56;
  const H = legendTop + Math.ceil(series.length / 2) * 18 + 40;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="14">${esc(`key.with() over many vkeys, one region each (bench/regions.mjs, ${first.date.slice(0, 10)})`)}</text>`,
    panel(LEFTS[0], 'hit rate (gates with no syscall)', series, 'hit', hitMax, hitTicks, xs),
    panel(LEFTS[1], 'syscalls per gate', series, 'syscalls', sysMax, sysTicks, xs),
  ];
  // Legend: two columns below the panels.
  const per = results.map((r) => `${r.gates.toLocaleString('en-US')} (${buildOf(r)})`).join(', ');
  parts.push(`<text x="${W / 2}" y="${H - 24}" text-anchor="middle" font-size="11" fill="#555">${esc(`exact stats() counts; gates per point, after as many warm-up gates: ${per}`)}</text>`);
  parts.push(`<text x="${W / 2}" y="${H - 8}" text-anchor="middle" font-size="11" fill="#555">${esc('stub: the pku backend with PKRU a variable (counts exact, protects nothing); guest: real PKU under QEMU TCG')}</text>`);
  series.forEach((s, i) => {
    const x = 70 + (i % 2) * 370;
    const y = legendTop + Math.floor(i / 2) * 18;
    const color = COLORS[s.backend];
    parts.push(`<line x1="${x}" x2="${x + 30}" y1="${y - 4}" y2="${y - 4}" stroke="${color}" stroke-width="${s.guest ? 1.5 : 2.5}" stroke-dasharray="${DASH[s.order]}"/>`);
    parts.push(s.order === 'zipf' ? `<circle cx="${x + 15}" cy="${y - 4}" r="3.5" fill="${color}"/>` : `<rect x="${x + 11.5}" y="${y - 7.5}" width="7" height="7" fill="white" stroke="${color}" stroke-width="1.5"/>`);
    parts.push(`<text x="${x + 38}" y="${y}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

function defaults() {
  const files = ['regions-stub.json', 'regions.json', 'regions-real.json'].map((f) => join(BUILD, 'results', f)).filter(existsSync);
  const guest = join(BUILD, 'vm', 'regions-real.json');
  if (existsSync(guest)) files.push(guest);
  return files;
}

export function main(argv = process.argv.slice(2)) {
  let out = join(ROOT, 'docs', 'regions.svg');
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out') out = argv[++i];
    else files.push(argv[i]);
  }
  const inputs = files.length ? files : defaults();
  if (inputs.length === 0) throw new Error('chart: no results; run node bench/regions.mjs first');
  const results = inputs.map((f) => JSON.parse(readFileSync(f, 'utf8')));
  writeFileSync(out, chart(results));
  console.log(`chart: ${inputs.map((f) => f.replace(ROOT, '')).join(', ')} -> ${out.replace(ROOT, '')}`);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
