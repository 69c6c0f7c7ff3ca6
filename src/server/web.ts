/**
 * The explorer page's files. `web/src/main.ts` is bundled with esbuild (a development dependency) into
 * memory when the server starts — no build step, nothing written — and the files of `web/public/`
 * are read once. Static requests are looked up by exact name in that in-memory table, so no
 * request path ever reaches the file system (no traversal by construction).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ProbsemError } from '../core/errors.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** The repository's web folder (src/server → ../../web, also from dist/server). */
export const WEB_DIR = resolve(HERE, '..', '..', 'web');

export interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
};

/** A file with its content type (from its name's extension) and a content-hash ETag. */
export function asset(body: Buffer, name: string): Asset {
  return { body, type: TYPES[extname(name)] ?? 'application/octet-stream', etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"` };
}

/**
 * Node's built-in modules as the page sees them. The library modules the page runs (the models,
 * word queries, the exact KL) share files with code that reads files or starts threads; the page
 * never takes those paths, and should one be reached, the call throws naming the function rather
 * than failing somewhere obscure. The build replaces each `node:` import with this module.
 */
const NODE_IN_BROWSER = `
const unavailable = (mod, name) => () => { throw new Error(mod + '.' + name + ' is not available in the browser'); };
module.exports = (mod) => new Proxy({}, { get: (_, k) => (k === '__esModule' ? false : unavailable(mod, String(k))) });
`;

const nodeBuiltinsPlugin = {
  name: 'probsem-node-builtins',
  setup(b: import('esbuild').PluginBuild) {
    b.onResolve({ filter: /^node:/ }, (a) => ({ path: a.path, namespace: 'node-builtin' }));
    b.onResolve({ filter: /^probsem:node-in-browser$/ }, (a) => ({ path: a.path, namespace: 'node-builtin-shared' }));
    b.onLoad({ filter: /.*/, namespace: 'node-builtin-shared' }, () => ({ contents: NODE_IN_BROWSER, loader: 'js' }));
    b.onLoad({ filter: /.*/, namespace: 'node-builtin' }, (a) => ({
      contents: `module.exports = require('probsem:node-in-browser')(${JSON.stringify(a.path)});`,
      loader: 'js',
      resolveDir: '.',
    }));
  },
};

/** esbuild's options for the page: one browser ES module (the server's in-memory build, `npm run build` and `export-web` share them). */
export function webBuildOptions(webDir = WEB_DIR, entry = 'main') {
  return {
    entryPoints: [join(webDir, 'src', `${entry}.ts`)],
    bundle: true,
    format: 'esm' as const,
    platform: 'browser' as const,
    target: 'es2020',
    logLevel: 'silent' as const,
    legalComments: 'none' as const,
    plugins: [nodeBuiltinsPlugin],
    // tfjs reads process.env.NODE_ENV-style flags where a bundler defines them.
    define: { 'process.env.NODE_ENV': '"production"' },
  };
}

/**
 * Bundles the page's TypeScript where esbuild is installed (a development checkout); an installed
 * package has no esbuild and serves web/dist/app.js, which `npm run build` writes before packing.
 */
async function buildApp(webDir: string, minify: boolean, name = 'main', out = 'app.js'): Promise<Buffer> {
  const entry = join(webDir, 'src', `${name}.ts`);
  let esbuild: typeof import('esbuild') | null = null;
  try {
    esbuild = await import('esbuild');
  } catch {
    esbuild = null;
  }
  if (esbuild && existsSync(entry)) {
    const r = await esbuild.build({ ...webBuildOptions(webDir, name), write: false, minify });
    return Buffer.from(r.outputFiles[0].contents);
  }
  const prebuilt = join(webDir, 'dist', out);
  if (existsSync(prebuilt)) return readFileSync(prebuilt);
  throw new ProbsemError(`cannot build the explorer page: esbuild is not installed and ${prebuilt} does not exist (run npm run build)`, 'NOT_FOUND');
}

/** The page's scripts: the page itself, and the worker that trains a model in the tab (static sites only). */
export const WEB_SCRIPTS = [
  { entry: 'main', out: 'app.js' },
  { entry: 'train-worker', out: 'train-worker.js' },
] as const;

/** The wasm binaries tfjs-backend-wasm may ask for (the threaded one only where a server sends COOP/COEP headers). */
export const TFJS_WASM_FILES = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm'];

/**
 * name → asset, for `GET /` (index.html) and `GET /static/<name>`: web/public's files, the page's
 * script, TensorFlow.js's wasm binaries (the page computes with them in both homes), and with
 * `worker` the training worker.
 */
export async function loadWebAssets(webDir = WEB_DIR, o: { minify?: boolean; worker?: boolean } = {}): Promise<Map<string, Asset>> {
  const out = new Map<string, Asset>();
  const pub = join(webDir, 'public');
  if (!existsSync(pub)) throw new ProbsemError(`the explorer page's folder ${pub} does not exist`, 'NOT_FOUND');
  for (const name of readdirSync(pub)) {
    const p = join(pub, name);
    if (statSync(p).isFile()) out.set(name, asset(readFileSync(p), name));
  }
  for (const w of WEB_SCRIPTS) {
    if (w.entry === 'train-worker' && !o.worker) continue;
    out.set(w.out, asset(await buildApp(webDir, o.minify ?? false, w.entry, w.out), w.out));
  }
  const wasmDir = dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
  for (const name of TFJS_WASM_FILES) out.set(name, asset(readFileSync(join(wasmDir, name)), name));
  return out;
}
