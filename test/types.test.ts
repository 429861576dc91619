// The public type surface, as tsc and napi generate it. A change to any exported type or any
// native binding fails here until the snapshot is updated on purpose
// (`npx vitest run test/types.test.ts -u`), so API changes are always visible in review.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');

function declarations(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? declarations(join(dir, e.name)) : e.name.endsWith('.d.ts') ? [join(dir, e.name)] : []))
    .sort();
}

describe('public type surface', () => {
  it('the TypeScript API (dist/**/*.d.ts)', async () => {
    const text = declarations(join(root, 'dist'))
      .map((f) => `// ==== ${relative(root, f)}\n${readFileSync(f, 'utf8').replace(/\/\/# sourceMappingURL=.*\n?/g, '')}`)
      .join('\n');
    await expect(text).toMatchFileSnapshot('./__snapshots__/public-api.d.ts.snap');
  });

  it('the napi-generated typings of the addon (native/binding.d.cts)', async () => {
    await expect(readFileSync(join(root, 'native/binding.d.cts'), 'utf8')).toMatchFileSnapshot('./__snapshots__/binding.d.cts.snap');
  });
});
