/**
 * The explorer's static home: a folder written by `probsem export-web`, computed in the tab. The
 * model is built by the library's own `modelFromWeights` and answers through the same functions
 * the server runs (annotateImage, queryDistribution, generateFromQuery, decodeInterpolation);
 * retrieval is the exact KL (`exactKl`, double precision) from the query to every exported image.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgl';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import type { ImageModel } from '../../src/models/base.js';
import { type ModelFile, modelFromWeights } from '../../src/models/persist.js';
import { annotateImage, reconstruct } from '../../src/runs/model-use.js';
import { decodeInterpolation, generateFromQuery, indexQuery, queryDistribution } from '../../src/runs/retrieval.js';
import { splitQuery } from '../../src/runs/words.js';
import { type ItemGaussians, FullScratch, exactKl, prepareQuery } from '../../src/index/kl-math.js';
import { pca2d } from '../../src/analysis/projection.js';
import { encodeSplitGaussians } from '../../src/runs/retrieval.js';
import { WordVectors } from '../../src/text/word-vectors.js';
import type { AnnotateResponse, LatentMethod, LatentResponse, SiteManifest } from '../../src/server/types.js';
import { type Explorer, type ExplorerInfo, type Hit, scaleFor, wordList } from './explorer.js';
import { canvasPixels, pixelsUrl, stripCanvas } from './pixels.js';

async function fetchOk(url: string): Promise<Response> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} (is the whole exported folder served?)`);
  return res;
}
const bytes = async (url: string) => new Uint8Array(await (await fetchOk(url)).arrayBuffer());

/**
 * The wasm backend (its .wasm files ship in static/), else WebGL, else plain JS; `?backend=` picks
 * one. wasm first: for these small dense models it answered 5–10× sooner than WebGL in headless
 * Chromium, where WebGL compiles a shader per new op shape (docs/explorer.md).
 */
async function startBackend(): Promise<string> {
  setWasmPaths(new URL('static/', location.href).href);
  const wanted = new URLSearchParams(location.search).get('backend');
  for (const b of wanted ? [wanted] : ['wasm', 'webgl', 'cpu']) {
    try {
      if (await tf.setBackend(b)) {
        await tf.ready();
        return b;
      }
    } catch {
      // Not available here: try the next.
    }
  }
  throw new Error(`no TensorFlow.js backend started${wanted ? ` (asked for '${wanted}')` : ''}`);
}

async function checkWeights(meta: ModelFile, blob: Uint8Array): Promise<void> {
  if (blob.byteLength !== meta.weights.bytes) throw new Error(`the weights hold ${blob.byteLength} bytes, model.json says ${meta.weights.bytes}`);
  // crypto.subtle exists only in secure contexts (https, localhost): elsewhere the size check stands alone.
  if (!globalThis.crypto?.subtle) return;
  const hex = [...new Uint8Array(await crypto.subtle.digest('SHA-256', blob as Uint8Array<ArrayBuffer>))].map((b) => b.toString(16).padStart(2, '0')).join('');
  if (hex !== meta.weights.sha256) throw new Error('the weights do not match the checksum in model.json (a partial or mixed copy?)');
}

export class LocalExplorer implements Explorer {
  private readonly pos = new Map<number, number>();
  private readonly shape: { height: number; width: number; channels: 1 | 3 };
  private readonly pixels: number;
  private readonly urls = new Map<string, string>();

  private constructor(
    readonly info: ExplorerInfo,
    readonly site: SiteManifest,
    private readonly meta: ModelFile,
    private readonly model: ImageModel,
    private readonly images: Uint8Array,
    private readonly items: ItemGaussians,
    private readonly vectors: WordVectors | null,
    private readonly maps: SiteManifest['maps'],
  ) {
    site.sample.ids.forEach((id, i) => this.pos.set(id, i));
    this.shape = site.image;
    this.pixels = site.image.height * site.image.width * site.image.channels;
  }

  /** Loads the folder the page was served from; `siteUrl` is its site.json. */
  static async open(siteUrl: string): Promise<LocalExplorer> {
    const backend = await startBackend();
    const site = (await (await fetchOk(siteUrl)).json()) as SiteManifest;
    if (site.format !== 'probsem-site' || site.formatVersion !== 1) throw new Error(`${siteUrl} is not a probsem site of format version 1`);
    const [meta, blob, images, post, words] = await Promise.all([
      fetchOk(site.model.json).then((r) => r.json() as Promise<ModelFile>),
      bytes(site.model.weights),
      bytes(site.sample.images),
      bytes(site.sample.posteriors),
      site.words ? bytes(site.words.file) : Promise.resolve(null),
    ]);
    await checkWeights(meta, blob);
    const model = modelFromWeights(meta, blob, site.model.weights) as unknown as ImageModel;
    const { count, dim, kind } = site.sample;
    const f = new Float32Array(post.buffer, post.byteOffset, post.byteLength / 4);
    const mean = f.subarray(0, count * dim);
    const items: ItemGaussians =
      kind === 'diag' ? { kind, dim, count, mean, variance: f.subarray(count * dim, 2 * count * dim) } : { kind, dim, count, mean, scaleTril: f.subarray(count * dim, count * dim * (1 + dim)) };
    const vectors = site.words && words ? new WordVectors(site.words.list, new Float32Array(words.buffer, words.byteOffset, words.byteLength / 4), site.words.dim, site.words.source) : null;
    const info: ExplorerInfo = {
      model: meta.model,
      latentDim: model.latentDim,
      classes: meta.classNames,
      image: site.image,
      datasetName: site.dataset.name,
      images: count,
      testImages: site.dataset.testImages,
      metrics: meta.metrics ?? null,
      methods: (['pca', 'tsne', 'umap'] as LatentMethod[]).filter((m) => site.maps[m]),
      home: `computed in this tab (TensorFlow.js, ${backend})`,
    };
    return new LocalExplorer(info, site, meta, model, images, items, vectors, site.maps);
  }

  /**
   * The same site's images explored through a model trained in this tab (the Train view): their
   * posteriors and the PCA map are computed here, from the new weights.
   */
  withModel(meta: ModelFile, blob: Uint8Array): LocalExplorer {
    const model = modelFromWeights(meta, blob, 'the trained weights') as unknown as ImageModel;
    const { count } = this.site.sample;
    const items = encodeSplitGaussians(model, { images: this.images, labels: Uint8Array.from(this.site.sample.labels), count }, this.pixels);
    const t0 = performance.now();
    const dim = items.dim;
    const xy = dim >= 2 ? pca2d(items.mean, count, dim) : Float64Array.from({ length: 2 * count }, (_, i) => (i % 2 ? 0 : items.mean[i >> 1]));
    const pca = { x: Array.from({ length: count }, (_, i) => xy[2 * i]), y: Array.from({ length: count }, (_, i) => xy[2 * i + 1]), seconds: (performance.now() - t0) / 1000 };
    const steps = meta.training?.steps ?? 0;
    const info: ExplorerInfo = { ...this.info, model: `${meta.model} trained in this tab (${steps} steps)`, latentDim: model.latentDim, metrics: null, methods: ['pca'] };
    // The site's word vectors answer only for a model trained on word vectors (the tab trains one-hot).
    const vectors = meta.labels?.kind === 'words' ? this.vectors : null;
    return new LocalExplorer(info, this.site, meta, model, this.images, items, vectors, { pca });
  }

  private position(id: number): number {
    const i = this.pos.get(id);
    if (i === undefined) throw new Error(`image ${id} is not in the exported sample`);
    return i;
  }

  private imageFloat(id: number): Float32Array {
    const i = this.position(id);
    return Float32Array.from(this.images.subarray(i * this.pixels, (i + 1) * this.pixels), (v) => v / 255);
  }

  async latent(method: LatentMethod): Promise<LatentResponse> {
    const m = this.maps[method];
    if (!m) throw new Error(`the ${method.toUpperCase()} map is not available for this model (export-web --maps; a model trained in the tab has PCA)`);
    return { method, ids: this.site.sample.ids, x: m.x, y: m.y, labels: this.site.sample.labels, classes: this.meta.classNames, seconds: m.seconds };
  }

  imageSrc(id: number, scale: number): string {
    const key = `${id}@${scale}`;
    let u = this.urls.get(key);
    if (!u) {
      u = pixelsUrl(this.images, this.position(id), this.shape, scale, 255);
      this.urls.set(key, u);
    }
    return u;
  }

  private annotatePixels(px: Float32Array, o: { reconstruct?: boolean; top?: number }): AnnotateResponse {
    const labels = annotateImage(this.model, this.meta, px).slice(0, o.top ?? this.meta.classNames.length);
    const res: AnnotateResponse = { labels };
    if (o.reconstruct) res.reconstruction = pixelsUrl(reconstruct(this.model, px, this.pixels), 0, this.shape, 1);
    return res;
  }

  async annotateId(id: number, o: { reconstruct?: boolean; top?: number }): Promise<AnnotateResponse> {
    const res = this.annotatePixels(this.imageFloat(id), o);
    res.image = { id, label: this.meta.classNames[this.site.sample.labels[this.position(id)]] };
    return res;
  }

  async annotateCanvas(canvas: HTMLCanvasElement, invert: boolean): Promise<AnnotateResponse> {
    return this.annotatePixels(canvasPixels(canvas, this.shape, invert && this.shape.channels === 1), {});
  }

  async generate(words: string, n: number, seed: number): Promise<{ labels: string[]; images: string[] }> {
    const list = wordList(words);
    const q = queryDistribution(this.model, this.meta, list, this.vectors);
    const px = generateFromQuery(this.model, q, n, seed);
    return { labels: splitQuery(this.meta, list), images: Array.from({ length: n }, (_, i) => pixelsUrl(px, i, this.shape, 1)) };
  }

  async retrieve(words: string, k: number): Promise<{ labels: string[]; results: Hit[] }> {
    const list = wordList(words);
    const q = prepareQuery(this.items.kind, this.items.dim, indexQuery(queryDistribution(this.model, this.meta, list, this.vectors)));
    const scratch = this.items.kind === 'full' ? new FullScratch(this.items.dim) : undefined;
    const kl = Array.from({ length: this.items.count }, (_, i) => exactKl(this.items, i, q, scratch));
    const best = kl.map((_, i) => i).sort((a, b) => kl[a] - kl[b] || a - b).slice(0, k);
    const scale = scaleFor(this.info, 56);
    return {
      labels: splitQuery(this.meta, list),
      results: best.map((i) => {
        const id = this.site.sample.ids[i];
        return { id, label: this.meta.classNames[this.site.sample.labels[i]], kl: kl[i], src: this.imageSrc(id, scale) };
      }),
    };
  }

  async interpolate(from: string, to: string, steps: number, scale: number): Promise<Blob> {
    const end = (w: string) => queryDistribution(this.model, this.meta, [w], this.vectors).mean;
    const frames = decodeInterpolation(this.model, end(from), end(to), steps);
    const c = stripCanvas(frames, steps, this.shape, scale);
    const blob = await new Promise<Blob | null>((r) => c.toBlob(r, 'image/png'));
    if (!blob) throw new Error('the interpolation strip could not be drawn');
    return blob;
  }
}
