// What the docs say that a program can check. The README's TypeScript and JavaScript snippets type-check under
// `strict` against the built types (what a user of the package gets), each as an ES module of its own; names a
// snippet leaves to the reader (the job type, the query it guards) are declared once, below. The docs name
// the specifier the examples really import.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { REPO } from './helpers/snapshot.js';

const READER = `
interface Job { id: number }
declare const jobs: Job[];
declare function handle(job: Job): void;
declare const urls: string[];
declare function fetchPage(url: string): Promise<string>;
declare function slowQuery(): Promise<unknown>;
`;

/** The ```js and ```ts blocks of README.md, with the line each starts on. */
function snippets(): { line: number; lang: string; code: string }[] {
  const out: { line: number; lang: string; code: string }[] = [];
  const lines = readFileSync(path.join(REPO, 'README.md'), 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^```(js|ts|mjs|typescript|javascript)\s*$/.exec(lines[i]!);
    if (m === null) continue;
    const start = i + 1;
    while (i + 1 < lines.length && !lines[i + 1]!.startsWith('```')) i++;
    out.push({ line: start + 1, lang: m[1]!, code: lines.slice(start, i + 1).join('\n') });
    i++;
  }
  return out;
}

const dir = mkdtempSync(path.join(tmpdir(), 'evy-readme-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("the README's code blocks type-check under strict against dist/*.d.ts", () => {
  const blocks = snippets();
  expect(blocks.length).toBeGreaterThanOrEqual(4);
  const files: string[] = [];
  for (const b of blocks) {
    const f = `readme-line-${b.line}.mts`;
    writeFileSync(path.join(dir, f), `${b.code}\n`);
    files.push(f);
  }
  writeFileSync(path.join(dir, 'reader.d.ts'), READER);
  const dist = (f: string): string => path.join(REPO, 'dist', f);
  writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        lib: ['ES2023'],
        types: ['node'],
        typeRoots: [path.join(REPO, 'node_modules', '@types')],
        skipLibCheck: true,
        paths: { evy: [dist('index.d.ts')], 'evy/*': [dist('*.d.ts')] },
      },
      files: ['reader.d.ts', ...files],
    }),
  );
  const tsc = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
  let out = '';
  try {
    execFileSync(process.execPath, [tsc, '-p', dir], { encoding: 'utf8', timeout: 120_000 });
  } catch (e) {
    out = String((e as { stdout?: string }).stdout ?? e);
  }
  // readme-line-N.mts(L,C): the README's line N + L - 1
  expect(out.replace(/\S*readme-line-(\d+)\.mts\((\d+),(\d+)\)/g, (_, n, l, c) => `README.md:${Number(n) + Number(l) - 1}:${c}`)).toBe('');
}, 150_000);

it('the docs name the specifier the examples import', () => {
  const examples = path.join(REPO, 'examples');
  const specs = new Set<string>();
  for (const f of readdirSync(examples).filter((x) => x.endsWith('.mjs'))) {
    const src = readFileSync(path.join(examples, f), 'utf8');
    // every import of evy itself (not of a sibling example or a builtin)
    for (const m of src.matchAll(/from '([^']+)'/g)) if (/^evy(\/|$)|dist\//.test(m[1]!)) specs.add(m[1]!);
  }
  expect([...specs].sort()).toEqual(['evy']);
  for (const doc of ['docs/examples.md', 'docs/networking.md']) {
    const text = readFileSync(path.join(REPO, doc), 'utf8');
    expect(text, doc).not.toMatch(/dist\/index\.js/);
    expect(text, doc).toMatch(/import `evy`/);
  }
});
