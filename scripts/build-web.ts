/** Writes the explorer page's bundle to web/dist/app.js, which an installed probsem (no esbuild) serves. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as esbuild from 'esbuild';
import { WEB_DIR, webBuildOptions } from '../src/server/web.js';

const out = join(WEB_DIR, 'dist', 'app.js');
mkdirSync(join(WEB_DIR, 'dist'), { recursive: true });
await esbuild.build({ ...webBuildOptions(), outfile: out, minify: true });
process.stdout.write(`wrote ${out}\n`);
