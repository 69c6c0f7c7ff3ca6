/** Writes the explorer page's bundles to web/dist/ (app.js, train-worker.js), which an installed probsem (no esbuild) serves. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as esbuild from 'esbuild';
import { WEB_DIR, WEB_SCRIPTS, webBuildOptions } from '../src/server/web.js';

mkdirSync(join(WEB_DIR, 'dist'), { recursive: true });
for (const w of WEB_SCRIPTS) {
  const out = join(WEB_DIR, 'dist', w.out);
  await esbuild.build({ ...webBuildOptions(WEB_DIR, w.entry), outfile: out, minify: true });
  process.stdout.write(`wrote ${out}\n`);
}
