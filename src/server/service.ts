/**
 * What the server does with a loaded run: thin wrappers over the library (src/runs/), plus the
 * caches a long-running process wants (the test split's index, shared with the CLI through the
 * run's index cache; the latent maps).
 */
import { type Dataset, imagesToFloat, pixelsOf } from '../data/dataset.js';
import { loadDataset } from '../data/registry.js';
import { encodeGridPng } from '../data/png.js';
import { type DecodedImage, decodeImage, describeConversion } from '../data/image-decode.js';
import { ProbsemError } from '../core/errors.js';
import type { ImageModel } from '../models/base.js';
import type { ModelFile } from '../models/persist.js';
import { annotateImage, checkCompatible, generateForLabel, labelIndex, loadImageModel, reconstruct, runDatasetName } from '../runs/runs.js';
import { runWordVectors, splitQuery } from '../runs/words.js';
import type { WordVectors } from '../text/word-vectors.js';
import type { KlIndex } from '../index/kl-index.js';
import { searchIndex } from '../runs/search-index.js';
import type { Distance } from '../index/distances.js';
import {
  type SplitPosteriors,
  decodeInterpolation,
  imageQuery,
  indexQuery,
  posteriorsOf,
  rankByDistance,
  generateFromQuery,
  queryDistribution,
  retrieveImages,
  UnknownWordError,
} from '../runs/retrieval.js';
import { HttpError } from './limits.js';
import { type Method, embedInWorker, pca2d, sampleIndices } from './latent.js';
import type { AnnotateResponse, LatentResponse, LabelScore, ModelResponse, LimitsInfo } from './types.js';

export interface ServiceOptions {
  /** Dataset to retrieve from and map (default: the one the model was trained on). */
  dataset?: string;
  dataDir?: string;
  onNotice?: (msg: string) => void;
  /** Test images the latent map uses. */
  latentSample?: number;
  /** false: never write the index cache file (pool workers: the main thread has written it). */
  saveIndex?: boolean;
}

/**
 * A decoder's refusal as an HTTP error: over the decode budget 413, a format recognised but not
 * read 415, not an image or corrupt 400; all with the decoder's reason.
 */
export function imageHttpError(e: unknown): unknown {
  if (!(e instanceof ProbsemError)) return e;
  if (e.code === 'DECODE_BUDGET') return new HttpError(413, 'DECODE_BUDGET', e.message);
  if (e.code === 'UNSUPPORTED_IMAGE') return new HttpError(415, 'UNSUPPORTED_IMAGE', e.message);
  if (e.code === 'DATA_FORMAT') return new HttpError(400, 'BAD_IMAGE', e.message);
  return e;
}

export const lastComponent = (p: string) => p.split(/[\\/]/).filter(Boolean).pop() ?? '';
const ABSOLUTE = /^(\/|[A-Za-z]:[\\/]|\\\\)/;

/** A copy with every absolute path (a string) cut to its last component: where files live is not the client's business. */
export function withoutPaths<T>(v: T): T {
  if (typeof v === 'string') return (ABSOLUTE.test(v) ? lastComponent(v) : v) as T;
  if (Array.isArray(v)) return v.map(withoutPaths) as T;
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, withoutPaths(x)])) as T;
  return v;
}

export class ModelService {
  readonly height: number;
  readonly width: number;
  /** 3: RGB per pixel (a colour run); 1: grey. */
  readonly channels: 1 | 3;
  readonly pixels: number;
  private posteriorsCache: SplitPosteriors | null = null;
  private readonly latentCache = new Map<Method, Promise<LatentResponse>>();

  private constructor(
    readonly model: ImageModel,
    readonly meta: ModelFile,
    readonly dataset: Dataset,
    readonly runDir: string,
    private readonly latentSample: number,
    /** Word vectors of a run trained on them (null for one-hot runs): any word they know is a query. */
    private readonly vectors: WordVectors | null = null,
    private readonly indexOptions: { onNotice?: (msg: string) => void; save?: boolean } = {},
  ) {
    this.height = dataset.height;
    this.width = dataset.width;
    this.channels = dataset.channels ?? 1;
    this.pixels = pixelsOf(dataset);
  }

  static async load(runDir: string, o: ServiceOptions = {}): Promise<ModelService> {
    const { model, meta } = loadImageModel(runDir);
    const ds = await loadDataset(runDatasetName(meta, o.dataset, o.onNotice), { dataDir: o.dataDir, onNotice: o.onNotice });
    checkCompatible(meta, ds);
    let vectors: WordVectors | null = null;
    try {
      vectors = await runWordVectors(meta, [], { neighbours: true, onNotice: o.onNotice });
    } catch (e) {
      // The class labels still work; only other words are refused.
      if (!(e instanceof ProbsemError && e.code === 'WORD_VECTORS_MISMATCH')) throw e;
      o.onNotice?.(e.message);
    }
    return new ModelService(model, meta, ds, runDir, o.latentSample ?? 2000, vectors, { onNotice: o.onNotice, save: o.saveIndex });
  }

  /** The run's word vectors (null for one-hot runs, or where they did not load). */
  get wordVectors(): WordVectors | null {
    return this.vectors;
  }

  get hasLabelEncoder(): boolean {
    return typeof this.model.encodeLabels === 'function';
  }

  private needLabelEncoder(what: string): void {
    if (!this.hasLabelEncoder) {
      throw new HttpError(422, 'NO_LABEL_ENCODER', `this ${this.meta.model} model has no label encoder, so it cannot ${what}`);
    }
  }

  /**
   * The test split's exact index: the run's cached one (search-index.ts), loaded or built on first
   * use and then held; every search of this service goes through it.
   */
  get index(): KlIndex {
    return searchIndex(this.runDir, this.model, this.meta, this.dataset, this.indexOptions);
  }

  /** The test split's posterior moments (latent maps, interpolation ends), read from the index. */
  get posteriors(): SplitPosteriors {
    this.posteriorsCache ??= posteriorsOf(this.index);
    return this.posteriorsCache;
  }

  /** The run as the API shows it: names, never the server's file paths. */
  describe(limits: LimitsInfo): ModelResponse {
    const m = this.meta;
    return withoutPaths({
      model: m.model,
      config: m.config,
      classes: m.classNames,
      latentDim: this.model.latentDim,
      image: { height: this.height, width: this.width },
      hasLabelEncoder: this.hasLabelEncoder,
      dataset: { ...(m.dataset ?? {}), name: lastComponent(this.dataset.name), testImages: this.dataset.test.count },
      training: (m.training as Record<string, unknown> | undefined) ?? null,
      metrics: m.metrics ?? null,
      limits,
    });
  }

  /**
   * Decodes an uploaded picture to the model's input (see decodeImage: PNG, JPEG, WebP, GIF; inverted
   * when dark-on-light unless `invert` says otherwise). Not an image or corrupt: 400; a format
   * recognised but not read: 415; both with the reason.
   */
  async decodeUpload(buf: Uint8Array, opts: { invert?: boolean; maxPixels: number; maxDecodeBytes?: number }): Promise<DecodedImage> {
    try {
      // Colour runs take pictures as they are, as their datasets were read.
      return await decodeImage(buf, {
        height: this.height,
        width: this.width,
        channels: this.channels,
        asIs: this.channels === 3,
        invert: opts.invert,
        maxPixels: opts.maxPixels,
        maxDecodeBytes: opts.maxDecodeBytes,
        source: 'the upload',
      });
    } catch (e) {
      throw imageHttpError(e);
    }
  }

  /** Grey values given directly: exactly height×width finite numbers in [0, 1]. */
  checkPixels(values: unknown[]): Float32Array {
    if (values.length !== this.pixels) {
      throw new HttpError(400, 'BAD_PIXELS', `pixels must hold ${this.pixels} values (${this.height}×${this.width}${this.channels === 3 ? '×3, RGB per pixel' : ''}), got ${values.length}`);
    }
    const out = new Float32Array(this.pixels);
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) {
        throw new HttpError(400, 'BAD_PIXELS', `pixels[${i}] must be a number in [0, 1], got ${JSON.stringify(v)}`);
      }
      out[i] = v;
    }
    return out;
  }

  checkId(id: number): number {
    if (!Number.isInteger(id) || id < 0) throw new HttpError(400, 'BAD_ID', `image id must be a non-negative integer, got '${id}'`);
    if (id >= this.dataset.test.count) {
      throw new HttpError(404, 'NOT_FOUND', `no image ${id}: the test split holds ${this.dataset.test.count} images (ids 0–${this.dataset.test.count - 1})`);
    }
    return id;
  }

  testImage(id: number): Float32Array {
    return imagesToFloat(this.dataset.test, [this.checkId(id)], this.pixels);
  }

  annotate(grey: Float32Array, o: { reconstruct?: boolean; top?: number } = {}): AnnotateResponse {
    this.needLabelEncoder('annotate images');
    const labels: LabelScore[] = annotateImage(this.model, this.meta, grey).slice(0, o.top ?? this.meta.classNames.length);
    const res: AnnotateResponse = { labels };
    if (o.reconstruct) res.reconstruction = this.dataUrl(reconstruct(this.model, grey, this.pixels), 1);
    return res;
  }

  /** An uploaded picture: its labels, and what was converted to make it model input. */
  async annotateUpload(buf: Uint8Array, o: { invert?: boolean; maxPixels: number; maxDecodeBytes?: number; reconstruct?: boolean; top?: number }): Promise<AnnotateResponse> {
    const { pixels, conversion: c } = await this.decodeUpload(buf, o);
    const res = this.annotate(pixels, o);
    res.input = { format: c.format, width: c.width, height: c.height, polarity: c.polarity, inverted: c.inverted, note: describeConversion('the upload', c) };
    return res;
  }

  annotateId(id: number, o: { reconstruct?: boolean; top?: number } = {}): AnnotateResponse {
    const res = this.annotate(this.testImage(id), o);
    res.image = { id, label: this.meta.classNames[this.dataset.test.labels[id]] };
    return res;
  }

  /** Words (or one label) → the labels they name, and the query that generation and retrieval use. */
  private resolve(words: string[] | undefined, label: string | undefined) {
    if (label !== undefined) {
      let i: number;
      try {
        i = labelIndex(this.meta, label);
      } catch {
        throw new UnknownWordError([label], `the model knows ${this.meta.classNames.join(', ')}`);
      }
      return { labels: [this.meta.classNames[i]], label: this.meta.classNames[i], words: [this.meta.classNames[i]] };
    }
    if (!words || !words.some((w) => w.trim())) throw new HttpError(400, 'BAD_REQUEST', 'give words (or a label)');
    return { labels: null, label: undefined, words };
  }

  generate(req: { words?: string[]; label?: string; n: number; seed: number }): { labels: string[]; images: string[] } {
    this.needLabelEncoder('generate from words');
    const r = this.resolve(req.words, req.label);
    let pixels: Float32Array;
    let labels: string[];
    if (r.label !== undefined) {
      pixels = generateForLabel(this.model, this.meta, r.label, req.n, req.seed);
      labels = r.labels!;
    } else {
      const q = queryDistribution(this.model, this.meta, r.words, this.vectors);
      labels = this.labelsOf(r.words);
      pixels = generateFromQuery(this.model, q, req.n, req.seed);
    }
    const images: string[] = [];
    for (let i = 0; i < req.n; i++) images.push(this.dataUrl(pixels.subarray(i * this.pixels, (i + 1) * this.pixels), 1));
    return { labels, images };
  }

  /** The members of the (already validated) set query, in order: commas separate them. */
  private labelsOf(words: string[]): string[] {
    return splitQuery(this.meta, words);
  }

  retrieve(words: string[], k: number, distance: Distance = 'kl') {
    this.needLabelEncoder('retrieve images for words');
    const q = queryDistribution(this.model, this.meta, words, this.vectors);
    const r =
      distance === 'kl'
        ? retrieveImages(this.model, this.dataset.test, this.pixels, q, k, { index: this.index })
        : rankByDistance(this.model, this.dataset.test, this.pixels, indexQuery(q), k, distance, { index: this.index });
    return {
      labels: this.labelsOf(words),
      distance,
      results: r.ids.map((id, i) => ({ id, label: this.meta.classNames[r.labels[i]], kl: r.kl[i], ...(r.score ? { score: r.score[i] } : {}), url: `/api/images/${id}` })),
    };
  }

  /** The k other test images closest to test image `id` (dissimilar: farthest), searched in the split's index. */
  similar(id: number, k: number, distance: Distance = 'kl', dissimilar = false) {
    const r = rankByDistance(this.model, this.dataset.test, this.pixels, imageQuery(this.model, this.testImage(id), this.pixels), k, distance, {
      largest: dissimilar,
      exclude: id,
      index: this.index,
    });
    const label = (i: number) => this.meta.classNames[this.dataset.test.labels[i]];
    return {
      image: { id, label: label(id) },
      distance,
      dissimilar,
      results: r.ids.map((x, i) => ({ id: x, label: label(x), kl: r.kl[i], ...(distance !== 'kl' ? { score: r.score![i] } : {}), url: `/api/images/${x}` })),
    };
  }

  /** A latent point for an interpolation end: a word's q(z|words) mean (any word on word-vector runs), or a test image's posterior mean. */
  private endPoint(v: string | number): Float32Array {
    const k = this.model.latentDim;
    if (typeof v === 'number') {
      const id = this.checkId(v);
      return this.posteriors.mean.slice(id * k, (id + 1) * k);
    }
    this.needLabelEncoder('interpolate between labels');
    return queryDistribution(this.model, this.meta, [v], this.vectors).mean;
  }

  interpolate(from: string | number, to: string | number, steps: number, scale: number): Buffer {
    const images = decodeInterpolation(this.model, this.endPoint(from), this.endPoint(to), steps);
    return encodeGridPng(images, steps, { cols: steps, height: this.height, width: this.width, channels: this.channels, scale, pad: 0 });
  }

  imagePng(id: number, scale: number): Buffer {
    return encodeGridPng(this.testImage(id), 1, { cols: 1, height: this.height, width: this.width, channels: this.channels, scale, pad: 0 });
  }

  reconstructionPng(id: number, scale: number): Buffer {
    const r = reconstruct(this.model, this.testImage(id), this.pixels);
    return encodeGridPng(r, 1, { cols: 1, height: this.height, width: this.width, channels: this.channels, scale, pad: 0 });
  }

  dataUrl(pixels: Float32Array, scale: number): string {
    const png = encodeGridPng(pixels, 1, { cols: 1, height: this.height, width: this.width, channels: this.channels, scale, pad: 0 });
    return `data:image/png;base64,${png.toString('base64')}`;
  }

  /** The latent map for a method, computed once (concurrent callers share the computation). */
  latent(method: Method): Promise<LatentResponse> {
    let p = this.latentCache.get(method);
    if (!p) {
      p = this.computeLatent(method);
      this.latentCache.set(method, p);
      // A failed computation is not cached: the next request tries again.
      p.catch(() => this.latentCache.delete(method));
    }
    return p;
  }

  private async computeLatent(method: Method): Promise<LatentResponse> {
    const t0 = performance.now();
    const split = this.dataset.test;
    // Barnes–Hut t-SNE maps the whole sample in seconds (10,000 points in ~30 s on 2 cores).
    const n = this.latentSample;
    const ids = sampleIndices(split.count, n);
    const k = this.model.latentDim;
    const post = this.posteriors;
    const data = new Float64Array(ids.length * k);
    ids.forEach((id, r) => data.set(post.mean.subarray(id * k, (id + 1) * k), r * k));
    const coords = method === 'pca' ? pca2d(data, ids.length, k) : await embedInWorker({ method, data, n: ids.length, d: k, seed: 0 });
    const x: number[] = [];
    const y: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      x.push(Number(coords[i * 2].toFixed(4)));
      y.push(Number(coords[i * 2 + 1].toFixed(4)));
    }
    return {
      method,
      ids,
      x,
      y,
      labels: ids.map((id) => split.labels[id]),
      classes: this.meta.classNames,
      seconds: (performance.now() - t0) / 1000,
    };
  }
}

