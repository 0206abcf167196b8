// Builds the UI into cmd/kubectl-flows/internal/ui/dist: one script, one
// stylesheet and the page, minified, the same bytes for the same sources
// and lockfile. Fails when a dependency's licence is not permissive.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';

const out = '../../cmd/kubectl-flows/internal/ui/dist';
const permissive = new Set(['MIT', 'Apache-2.0', 'ISC', 'BSD-2-Clause', 'BSD-3-Clause', '0BSD']);
const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
for (const [path, pkg] of Object.entries(lock.packages)) {
  if (path && !permissive.has(pkg.license)) {
    console.error(`${path}: licence ${pkg.license} is not one of ${[...permissive].join(', ')}`);
    process.exit(1);
  }
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const common = { bundle: true, minify: true, legalComments: 'eof', logLevel: 'warning', charset: 'utf8' };
await build({ ...common, entryPoints: ['src/main.js'], outfile: `${out}/app.js`, format: 'iife', target: 'es2020' });
await build({ ...common, entryPoints: ['src/style.css'], outfile: `${out}/app.css` });
copyFileSync('index.html', `${out}/index.html`);
