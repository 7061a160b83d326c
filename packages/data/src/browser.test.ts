import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as browserEntry from './browser.js';
import * as nodeEntry from './index.js';

/** Every module `entry` reaches at run time, by following its relative imports (not `import type`). */
function reachableModules(entry: string): Map<string, string[]> {
  const seen = new Map<string, string[]>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    const source = readFileSync(file, 'utf8');
    const specifiers = [
      ...source.matchAll(/(?:^|\n)\s*(?:import|export)(?!\s+type\s)[^'"]*?from\s+'([^']+)'/g),
    ].map((match) => match[1] as string);
    seen.set(file, specifiers);
    for (const specifier of specifiers) {
      if (specifier.startsWith('.')) {
        visit(fileURLToPath(new URL(specifier.replace(/\.js$/, '.ts'), `file://${file}`)));
      }
    }
  };
  visit(entry);
  return seen;
}

describe('the browser entry of @tessera/data', () => {
  it('reaches no Node built-ins, so bundlers can take it into a web page', () => {
    const modules = reachableModules(fileURLToPath(new URL('./browser.ts', import.meta.url)));
    expect(modules.size).toBeGreaterThan(4);
    for (const [file, specifiers] of modules) {
      for (const specifier of specifiers) {
        expect(`${file}: ${specifier}`).not.toMatch(/: node:|: (fs|path|module|os)$/);
      }
    }
  });

  it('is a subset of the Node entry, which adds only the file and dataset loaders', () => {
    const extra = Object.keys(nodeEntry).filter((name) => !(name in browserEntry));
    expect(extra.sort()).toEqual([
      'PENGUINS_INPUT',
      'PENGUINS_OUTPUT',
      'SPAM_ASSASSIN_OUTPUT',
      'emailText',
      'loadCsvExamples',
      'loadMnist',
      'loadPenguins',
      'loadSpamAssassin',
      'loadTabularFile',
      'loadTextFile',
      'penguinsCsv',
      'readTextFile',
    ]);
  });
});
