// The JavaScript the first page loads (the entry script and what
// index.html preloads), gzipped, against the budget of 150 KB.
//   node scripts/budget.mjs            print and check
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const web = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(web, 'dist');
const BUDGET = 150 * 1024;

const html = readFileSync(join(dist, 'index.html'), 'utf8');
const scripts = [...html.matchAll(/<script[^>]*\bsrc="([^"]+)"/g), ...html.matchAll(/<link[^>]*rel="modulepreload"[^>]*href="([^"]+)"/g)].map(
  (m) => m[1],
);
const css = [...html.matchAll(/<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"/g)].map((m) => m[1]);

function size(path) {
  const bytes = readFileSync(join(dist, path));
  return { path, raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
}

const js = scripts.map(size);
const styles = css.map(size);
const total = js.reduce((n, f) => n + f.gzip, 0);
const result = { js, css: styles, jsGzipTotal: total, budget: BUDGET };
mkdirSync(join(web, 'test-results'), { recursive: true });
writeFileSync(join(web, 'test-results', 'budget.json'), JSON.stringify(result, null, 2));
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
for (const f of [...js, ...styles]) console.log(`  ${f.path}: ${kb(f.raw)} raw, ${kb(f.gzip)} gzipped`);
console.log(`budget: first-page JavaScript ${kb(total)} gzipped (budget ${kb(BUDGET)})`);
if (total > BUDGET) {
  console.error('budget: FAIL: the first page ships more JavaScript than the budget');
  process.exit(1);
}
