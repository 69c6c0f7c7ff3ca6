#!/usr/bin/env node
/** The `probsem` command line. Commands are thin: they parse options and call the library. */
import { ProbsemError } from '../core/errors.js';
import { initBackend } from '../core/backend.js';
import { nearest } from './args.js';
import { COMMANDS } from './commands/index.js';

const USAGE = `probsem — probabilistic semantic embeddings of images and words

Usage: probsem <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(12)} ${c.summary}`)
  .join('\n')}

Common options: --backend wasm|cpu|tensorflow|auto (or PROBSEM_BACKEND), --debug, --help
Run 'probsem <command> --help' for a command's options.`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE + '\n');
    return name ? 0 : 1;
  }
  const debug = rest.includes('--debug');
  try {
    const cmd = COMMANDS[name];
    if (!cmd) {
      const near = nearest(name, Object.keys(COMMANDS));
      throw new ProbsemError(`unknown command '${name}'${near ? ` (did you mean ${near}?)` : ''}. Commands: ${Object.keys(COMMANDS).join(', ')}`, 'BAD_OPTION');
    }
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(cmd.help + '\n');
      return 0;
    }
    const backendIdx = rest.indexOf('--backend');
    const inline = rest.find((a) => a.startsWith('--backend='));
    await initBackend(inline ? inline.slice('--backend='.length) : backendIdx >= 0 ? rest[backendIdx + 1] : undefined, {
      threads: process.env.PROBSEM_THREADS ? undefined : cmd.threads,
    });
    return await cmd.run(rest);
  } catch (e) {
    if (e instanceof ProbsemError && !debug) {
      process.stderr.write(`probsem: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(`probsem: ${(e as Error).stack ?? String(e)}\n`);
    return 1;
  }
}

const code = await main(process.argv.slice(2));
process.exitCode = code;
