import { trainCommand } from './train.js';
import { evalCommand } from './eval.js';
import { annotateCommand, generateCommand } from './image.js';
import { demoCommand } from './demo.js';
import { judgeCommand } from './judge.js';

export interface Command {
  summary: string;
  help: string;
  /** wasm compute threads this command wants (default: PROBSEM_THREADS or all cores). */
  threads?: number;
  run(argv: string[]): Promise<number>;
}

export const COMMANDS: Record<string, Command> = {
  train: trainCommand,
  eval: evalCommand,
  annotate: annotateCommand,
  generate: generateCommand,
  judge: judgeCommand,
  demo: demoCommand,
};
