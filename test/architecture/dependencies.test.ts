// The architecture's dependency rules (.dependency-cruiser.cjs: no import cycles, proxy/
// stays out of the control plane, admin/ through the control plane's door, folders through
// their index.ts) hold over src/. The same rules run over fixtures that break each of them,
// so that a rule that silently stopped matching would fail here too.

import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cruise, type ICruiseResult, type IViolation } from 'dependency-cruiser';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';
import t from 'tap';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
// dependency-cruiser resolves paths and names modules relative to the working directory.
process.chdir(ROOT);

/** Every violation as `rule: from -> to` (the whole loop for a cycle), sorted. */
async function violations(paths: string[]): Promise<string[]> {
  const options = await extractDepcruiseOptions(join(ROOT, '.dependency-cruiser.cjs'));
  const tsConfig = extractTSConfig(join(ROOT, 'tsconfig.json'));
  const { output } = await cruise(paths, options, {}, { tsConfig });
  const result = output as ICruiseResult;
  return result.summary.violations.map(describe).sort();
}

function describe(v: IViolation): string {
  const to = v.cycle !== undefined ? v.cycle.map((step) => step.name).join(' -> ') : v.to;
  return `${v.rule.name}: ${v.from} -> ${to}`;
}

t.test('src/ keeps the dependency rules', async (t) => {
  // The diff lists each violation on its own line.
  t.same(await violations(['src']), [], 'no violations of .dependency-cruiser.cjs');
});

t.test('an import cycle is reported, type-only imports included', async (t) => {
  const dir = 'test/fixtures/dependency-cycle';
  // b.ts -> a.ts is the type-only import: without it there would be no cycle.
  t.same(await violations([dir]), [`no-cycle: ${dir}/a.ts -> ${dir}/b.ts -> ${dir}/a.ts`]);
});

t.test('layer and door rules are reported', async (t) => {
  const src = 'test/fixtures/dependency-layers/src';
  t.same(await violations([src]), [
    `admin-takes-control-types-only: ${src}/admin/keys-api.ts -> ${src}/control/index.ts`,
    `admin-through-control-door: ${src}/admin/deployments-api.ts -> ${src}/control/deployments.ts`,
    `folder-through-index: ${src}/admin/deployments-api.ts -> ${src}/control/deployments.ts`,
    `folder-through-index: ${src}/cli.ts -> ${src}/control/deployments.ts`,
    `proxy-stays-data-plane: ${src}/proxy/gateway.ts -> ${src}/control/index.ts`,
  ]);
});
