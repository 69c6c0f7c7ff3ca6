/** Messages between the page's Train view (train-view.ts) and its worker (train-worker.ts). */
import type { SiteManifest } from '../../src/server/types.js';

export interface TrainSettings {
  steps: number;
  batchSize: number;
  latent: number;
  width: number;
  seed: number;
}

export type ToWorker =
  | { type: 'start'; base: string; train: NonNullable<SiteManifest['train']>; settings: TrainSettings }
  | { type: 'stop' };

export type FromWorker =
  /** Per-step losses since the last message; `map`: PCA of the map sample's posterior means, when refreshed. */
  | { type: 'progress'; step: number; steps: number; losses: number[]; msPerStep: number; map?: { x: number[]; y: number[]; labels: number[] } }
  /** The trained run: model.json's text, the weights, and the run archive (model.json, weights.bin, train.jsonl). */
  | { type: 'done'; step: number; modelJson: string; weights: ArrayBuffer; zip: ArrayBuffer; name: string; msPerStep: number; fma: boolean }
  | { type: 'error'; message: string };
