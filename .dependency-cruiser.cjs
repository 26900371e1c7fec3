// Architecture rules of sluice, checked by `npm run deps` and by
// test/architecture/dependencies.test.ts (so a violation fails `npm test`).
// Patterns begin with `(^|/)src/` so that the same rules also match the fixture trees under
// test/fixtures/dependency-*/, which prove that each rule can fail.

const { existsSync, readdirSync } = require('node:fs');
const { join } = require('node:path');

// The folders of src/ entered through an index.ts (rule folder-through-index). Read from disk
// so that a new folder with an index.ts is covered the day it appears. Only src/'s own
// folders: nested ones (proxy/upstream/, proxy/filters/) are not doors, the rest of proxy/
// takes some of their modules directly.
const SRC = join(__dirname, 'src');
const doors = readdirSync(SRC, { withFileTypes: true })
  .filter((e) => e.isDirectory() && existsSync(join(SRC, e.name, 'index.ts')))
  .map((e) => e.name);

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-cycle',
      severity: 'error',
      comment:
        'No import cycles. Type-only imports count too (tsPreCompilationDeps below): a type cycle ' +
        'is still two modules that cannot be understood, moved or tested one without the other.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'proxy-stays-data-plane',
      severity: 'error',
      comment:
        'The data plane runs in worker threads: it never spawns (ports/), never serves the admin ' +
        'API (admin/) and never reaches into the control plane (control/); it only reads the ' +
        'route table the control plane posts to it.',
      from: { path: '(^|/)src/proxy/' },
      to: { path: '(^|/)src/(ports|admin|control)/' },
    },
    {
      name: 'admin-through-control-door',
      severity: 'error',
      comment:
        'The admin API sees the control plane only through src/control/index.ts (its facade), ' +
        'so that the deployment manager and key registry can change without touching admin/.',
      from: { path: '(^|/)src/admin/' },
      to: { path: '(^|/)src/control/', pathNot: '(^|/)src/control/index\\.ts$' },
    },
    {
      name: 'admin-takes-control-types-only',
      severity: 'error',
      comment:
        'Through that door admin/ takes types only (the ControlPlane facade it is handed): the ' +
        'composition root, src/serve.ts, builds the control plane and passes it in.',
      from: { path: '(^|/)src/admin/' },
      to: { path: '(^|/)src/control/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'folder-through-index',
      severity: 'error',
      comment:
        'A folder with an index.ts is entered through it: another folder importing one of its ' +
        'modules directly would make that module part of the public surface without anyone ' +
        'deciding so.',
      // $2: the importer's folder, or its file name for a module at the top of src/.
      from: { path: '(^|/)src/([^/]+)' },
      to: {
        path: `(^|/)src/(${doors.join('|')})/`,
        pathNot: ['(^|/)src/$2/', '(^|/)src/[^/]+/index\\.ts$'],
      },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(node_modules|dist|dist-bench)/' },
    moduleSystems: ['es6'],
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
