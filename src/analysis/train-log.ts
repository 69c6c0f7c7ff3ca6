/**
 * Reading a run's training log (`train.jsonl`: one JSON object per logged step, the loss terms
 * averaged since the last line) into curves for plotting.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DataFormatError, ProbsemError } from '../core/errors.js';
import type { CurvePoint } from './plot.js';

/** The log's file name in a run directory (the trainer's LOG_FILE). */
export const TRAIN_LOG = 'train.jsonl';

/** Logged fields that are not loss terms. */
const NOT_TERMS = new Set(['step', 'msPerStep', 'skipped']);

export interface TrainLogRecord {
  step: number;
  /** Numeric loss terms of this line ("loss", "recon", "kl", …). */
  terms: Record<string, number>;
}

/**
 * Parses a training log. Lines recording a skipped batch (`{"step", "skipped"}`) and blank lines
 * are left out; a line that is not a JSON object with a numeric step is an error naming the line.
 */
export function parseTrainLog(text: string, source: string): TrainLogRecord[] {
  const out: TrainLogRecord[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      throw new DataFormatError(`${source} line ${i + 1} is not JSON: ${line.slice(0, 60)}`);
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new DataFormatError(`${source} line ${i + 1} is not a JSON object`);
    const rec = obj as Record<string, unknown>;
    if (typeof rec.step !== 'number' || !Number.isFinite(rec.step)) throw new DataFormatError(`${source} line ${i + 1} has no numeric "step"`);
    if ('skipped' in rec) return;
    const terms: Record<string, number> = {};
    for (const [k, v] of Object.entries(rec)) if (!NOT_TERMS.has(k) && typeof v === 'number' && Number.isFinite(v)) terms[k] = v;
    out.push({ step: rec.step, terms });
  });
  return out;
}

/** Reads `DIR/train.jsonl`, failing clearly when the run has none or it holds no loss values. */
export function readTrainLog(runDir: string): TrainLogRecord[] {
  if (!existsSync(runDir) || !statSync(runDir).isDirectory()) throw new ProbsemError(`run directory ${runDir} does not exist`, 'NOT_FOUND');
  const file = join(runDir, TRAIN_LOG);
  if (!existsSync(file)) throw new ProbsemError(`${runDir} has no ${TRAIN_LOG} (runs trained with 'probsem train --out DIR' write one)`, 'NOT_FOUND');
  const records = parseTrainLog(readFileSync(file, 'utf8'), file);
  if (!records.some((r) => Object.keys(r.terms).length > 0)) throw new ProbsemError(`${file} holds no logged loss values`, 'BAD_OPTION');
  return records;
}

/** The terms of a log in order of first appearance, the total "loss" first. */
export function logTerms(records: TrainLogRecord[]): string[] {
  const seen = [...new Set(records.flatMap((r) => Object.keys(r.terms)))];
  return seen.includes('loss') ? ['loss', ...seen.filter((t) => t !== 'loss')] : seen;
}

/** A log as curve points for `curvesSpec`, labelled with the run's name. */
export function logCurves(records: TrainLogRecord[], run: string): CurvePoint[] {
  return records.flatMap((r) => Object.entries(r.terms).map(([term, value]) => ({ run, step: r.step, term, value })));
}
