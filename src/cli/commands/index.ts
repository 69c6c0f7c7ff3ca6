import { trainCommand } from './train.js';
import { evalCommand } from './eval.js';
import { annotateCommand, generateCommand } from './image.js';
import { demoCommand } from './demo.js';
import { judgeCommand } from './judge.js';
import { serveCommand } from './serve.js';
import { exportWebCommand } from './export-web.js';
import { benchCommand } from './bench-paper.js';
import { neighboursCommand } from './words.js';
import { retrieveCommand } from './retrieve.js';
import { similarCommand } from './similar.js';
import { indexCommand } from './kl-index.js';
import { embedCommand } from './embed.js';
import { interpolateCommand, plotCommand } from './plot.js';
import { clusterCommand } from './cluster.js';
import { coordinateCommand } from './coordinate.js';
import { arithmeticCommand } from './arithmetic.js';
import { reconstructCommand } from './reconstruct.js';

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
  reconstruct: reconstructCommand,
  neighbours: neighboursCommand,
  retrieve: retrieveCommand,
  similar: similarCommand,
  index: indexCommand,
  embed: embedCommand,
  plot: plotCommand,
  interpolate: interpolateCommand,
  cluster: clusterCommand,
  arithmetic: arithmeticCommand,
  coordinate: coordinateCommand,
  judge: judgeCommand,
  demo: demoCommand,
  serve: serveCommand,
  'export-web': exportWebCommand,
  bench: benchCommand,
};
