/** Starting a worker thread on one of this package's modules, from the built JS or the TypeScript sources. */
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { extname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * A worker running `name` (a module beside `from`, without its extension). From TypeScript
 * sources (run through tsx) the worker registers tsx's loader before importing its module, as a
 * bare worker thread would not read .ts files.
 */
export function startModuleWorker(from: string, name: string, options: WorkerOptions = {}): Worker {
  const here = fileURLToPath(from);
  const file = fileURLToPath(new URL(`./${name}${extname(here)}`, from));
  if (extname(here) !== '.ts') return new Worker(file, options);
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  const code = `import(${tsx}).then((t) => { t.register(); return import(${JSON.stringify(pathToFileURL(file).href)}); });`;
  return new Worker(code, { ...options, eval: true });
}
