/**
 * Learning-rate schedules: the factor each step's Adam learning rate is multiplied by. A function of
 * the step and the run's length only, so a resumed run follows the same curve.
 */
import { ProbsemError } from '../core/errors.js';

export const LR_SCHEDULES = ['constant', 'cosine'] as const;
export type LrSchedule = (typeof LR_SCHEDULES)[number];

/** Checks a schedule name, or fails listing the known ones. */
export function lrSchedule(name: string): LrSchedule {
  if (!(LR_SCHEDULES as readonly string[]).includes(name)) {
    throw new ProbsemError(`unknown learning-rate schedule '${name}': choose one of ${LR_SCHEDULES.join(', ')}`, 'BAD_OPTION');
  }
  return name as LrSchedule;
}

/**
 * The factor at `step` (0-based) of a `steps`-step run: 1 for 'constant'; for 'cosine' (Loshchilov &
 * Hutter's SGDR without restarts) ½(1 + cos(π·step/steps)), from 1 at the first step towards 0 at
 * the last, so long runs end with small, averaging steps.
 */
export function lrFactor(schedule: LrSchedule, step: number, steps: number): number {
  if (schedule === 'constant') return 1;
  return 0.5 * (1 + Math.cos((Math.PI * step) / steps));
}
