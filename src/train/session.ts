/**
 * A PSE* trained step by step under a caller's control: the explorer page's training worker runs
 * one, a few steps at a time, between messages. Each step is the one `probsem train` takes on the
 * fast engine (the same seeded batches, `TapeStepper`, Adam), so a session of N steps ends with the
 * weights a run of N steps saves. It writes no files: the trained model comes back as model.json
 * and weights bytes (`modelFile`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ProbsemError } from '../core/errors.js';
import { type Dataset, Batcher, imagesToFloat, meanImage, pixelsOf } from '../data/dataset.js';
import type { ImageModel, Trainable } from '../models/base.js';
import { type ModelFile, type ModelProvenance, modelFileOf } from '../models/persist.js';
import { createModel } from '../models/registry.js';
import { TapeStepper } from './tape-stepper.js';
import { makeRawBatch } from './trainer.js';

export interface TrainSessionOptions {
  /** Latent dimension (default 10). */
  latent?: number;
  /** Width of the first hidden layer of the encoder, decoder and classifier (default 512, the CLI's model). */
  width?: number;
  batchSize?: number;
  lr?: number;
  seed?: number;
  /** Kernel threads (a browser has 1). */
  threads?: number;
}

/** The model options a session trains, as `probsem train --model pse-star` records them. */
export function sessionModelConfig(ds: Pick<Dataset, 'height' | 'width' | 'channels' | 'classNames'>, o: TrainSessionOptions): Record<string, unknown> {
  const latent = o.latent ?? 10;
  const width = o.width ?? 512;
  if (!Number.isInteger(latent) || latent < 1 || latent > 1024) throw new ProbsemError(`latent must be an integer in 1..1024, got ${latent}`, 'BAD_OPTION');
  if (!Number.isInteger(width) || width < 1 || width > 4096) throw new ProbsemError(`width must be an integer in 1..4096, got ${width}`, 'BAD_OPTION');
  // Width 512 is the default model: its config then reads exactly as a plain `probsem train` run's.
  const hidden = width === 512 ? {} : { encoderHidden: [width, 64], decoderHidden: [64, width], classifierHidden: [width, 64] };
  return { inputDim: pixelsOf(ds), numClasses: ds.classNames.length, latent, ...hidden };
}

export class TrainSession {
  private done = 0;
  private seconds = 0;
  private last: Record<string, number> = {};

  private constructor(
    readonly model: Trainable & ImageModel & { config: Record<string, unknown> },
    private readonly stepper: TapeStepper,
    private readonly ds: Dataset,
    private readonly batcher: Batcher,
    readonly options: Required<Omit<TrainSessionOptions, 'threads'>>,
  ) {}

  static async create(ds: Dataset, o: TrainSessionOptions = {}): Promise<TrainSession> {
    const opts = { latent: o.latent ?? 10, width: o.width ?? 512, batchSize: o.batchSize ?? 100, lr: o.lr ?? 1e-3, seed: o.seed ?? 0 };
    if (!(opts.lr > 0) || !Number.isFinite(opts.lr)) throw new ProbsemError(`learning rate must be > 0, got ${opts.lr}`, 'BAD_OPTION');
    if (!Number.isInteger(opts.seed) || opts.seed < 0) throw new ProbsemError(`seed must be a non-negative integer, got ${opts.seed}`, 'BAD_OPTION');
    const batcher = new Batcher(ds.train.count, opts.batchSize, opts.seed);
    const model = createModel('pse-star', sessionModelConfig(ds, opts), opts.seed) as TrainSession['model'];
    // As the trainer does on a fresh run: the decoder's output bias starts at the data's mean image.
    model.initFromData?.({ meanImage: meanImage(ds.train, pixelsOf(ds)) });
    const stepper = await TapeStepper.create(model, { lr: opts.lr, seed: opts.seed, threads: o.threads });
    stepper.syncFromModel();
    return new TrainSession(model, stepper, ds, batcher, opts);
  }

  /** Whether the kernels fuse multiply-adds (relaxed SIMD): runs reproduce bit for bit only within one choice. */
  get fma(): boolean {
    return this.stepper.kernels.fma;
  }

  /** Steps taken so far. */
  get steps(): number {
    return this.done;
  }

  /** Runs n more steps; returns each step's loss terms. */
  step(n = 1): Record<string, number>[] {
    const pixels = pixelsOf(this.ds);
    const out: Record<string, number>[] = [];
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const s = this.done;
      const batch = makeRawBatch(this.ds.train, this.batcher.indices(s), pixels, this.ds.classNames.length);
      this.last = this.stepper.stepRaw(batch, s);
      out.push(this.last);
      this.done++;
    }
    this.seconds += (performance.now() - t0) / 1000;
    return out;
  }

  /** Writes the kernels' current weights into the model's tfjs variables (before using `model`). */
  sync(): void {
    this.stepper.syncToModel();
  }

  /** Posterior means (row-major, latent wide) of some test images under the current weights. */
  encodeMeans(ids: ArrayLike<number>): Float32Array {
    this.sync();
    const pixels = pixelsOf(this.ds);
    return tf.tidy(() => this.model.encodeImage(tf.tensor2d(imagesToFloat(this.ds.test, ids, pixels), [ids.length, pixels])).mean.dataSync() as Float32Array);
  }

  /**
   * model.json and weights.bin of the model as trained so far, with the provenance `probsem train`
   * records. `datasetHash`: the dataset's content hash (datasetHash(), computed where node:crypto is).
   */
  modelFile(datasetHash: string, hash?: (data: Uint8Array | string) => string, backend = 'probsem wasm kernels'): { meta: ModelFile; blob: Uint8Array } {
    this.sync();
    const ds = this.ds;
    const provenance: ModelProvenance = {
      dataset: { name: ds.name, source: ds.source, hash: datasetHash, height: ds.height, width: ds.width, trainCount: ds.train.count },
      training: {
        seed: this.options.seed,
        steps: this.done,
        batchSize: this.options.batchSize,
        lr: this.options.lr,
        backend,
        engine: 'fast',
        seconds: this.seconds,
        finalTerms: this.last,
      },
    };
    return modelFileOf(this.model, { classNames: ds.classNames, ...provenance }, hash);
  }

  async dispose(): Promise<void> {
    await this.stepper.dispose();
    this.model.params.dispose?.();
  }
}
