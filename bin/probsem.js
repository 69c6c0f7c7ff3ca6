#!/usr/bin/env node
// Runs the compiled CLI when built (npm run build), otherwise the TypeScript source through tsx's
// loader in this same process, so signals (Ctrl-C, kill, timeout) reach the CLI itself.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const dist = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (existsSync(dist)) {
  await import(pathToFileURL(dist).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(new URL('../src/cli/main.ts', import.meta.url).href);
}
