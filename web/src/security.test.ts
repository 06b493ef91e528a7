// What the console's source must never do, checked on the source itself:
// no raw HTML, no token storage outside memory, no inline styles (the CSP
// allows style-src 'self' only), no eval, no third-party origins.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'test' ? [] : sources(path);
    return /\.(ts|tsx)$/.test(name) && !/\.test\.tsx?$/.test(name) && name !== 'schema.ts' ? [path] : [];
  });
}

/** The code without its comments (which may name what the code avoids). */
function code(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

const files = sources(dirname(fileURLToPath(import.meta.url))).map((path) => ({ path, text: code(readFileSync(path, 'utf8')) }));

const FORBIDDEN: [string, RegExp][] = [
  ['raw HTML', /dangerouslySetInnerHTML|\.innerHTML\s*=|outerHTML\s*=|insertAdjacentHTML|document\.write/],
  ['storage outside memory', /localStorage|sessionStorage|document\.cookie|indexedDB/],
  ['an inline style', /\sstyle=\{/],
  ['eval', /\beval\(|new Function\(/],
  ['another origin', /https?:\/\/(?!console\.invalid)/],
];

describe('the source', () => {
  it('has files to check', () => {
    expect(files.length).toBeGreaterThan(10);
  });
  for (const [what, pattern] of FORBIDDEN) {
    it(`has no ${what}`, () => {
      const hits = files.filter((f) => pattern.test(f.text)).map((f) => f.path);
      expect(hits).toEqual([]);
    });
  }
});
