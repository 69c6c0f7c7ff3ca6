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

/**
 * The weights, from the browser's Cache Storage when this page fetched them before (keyed by their
 * SHA-256, so a changed model is a miss), else from the network, then stored. Cache Storage exists
 * only in secure contexts (https, localhost); elsewhere the HTTP cache alone applies.
 */
async function cachedWeights(url: string, meta: ModelFile): Promise<Uint8Array> {
  const key = new URL(`probsem-weights/${meta.weights.sha256}`, location.href).href;
  let cache: Cache | null = null;
  try {
    cache = globalThis.caches ? await caches.open('probsem-weights-v1') : null;
    const hit = cache ? await cache.match(key) : undefined;
    if (hit) {
      const blob = new Uint8Array(await hit.arrayBuffer());
      // A damaged entry is dropped and fetched again rather than trusted.
      if (blob.byteLength === meta.weights.bytes) {
        try {
          await checkWeights(meta, blob);
          return blob;
        } catch {
          await cache!.delete(key);
        }
      }
    }
  } catch {
    cache = null; // storage refused (private mode, quota): fetch as usual
  }
  const blob = await bytes(url);
  await checkWeights(meta, blob);
  try {
    await cache?.put(key, new Response(blob as Uint8Array<ArrayBuffer>, { headers: { 'content-type': 'application/octet-stream' } }));
  } catch {
    // Quota or storage errors cost only the next visit's download.
  }
  return blob;
}

/** The test images a LocalExplorer holds, with their posteriors (absent: the server keeps the split). */
interface SampleData {
  ids: number[];
  labels: number[];
  images: Uint8Array;
  items: ItemGaussians;
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
    private readonly data: SampleData | null,
    private readonly vectors: WordVectors | null,
    private readonly maps: SiteManifest['maps'],
  ) {
    data?.ids.forEach((id, i) => this.pos.set(id, i));
    this.shape = site.image;
    this.pixels = site.image.height * site.image.width * site.image.channels;
  }

  /** Loads the folder the page was served from (`siteUrl` is its site.json), or the server's /api/site. */
  static async open(siteUrl: string): Promise<LocalExplorer> {
    const backend = await startBackend();
    const site = (await (await fetchOk(siteUrl)).json()) as SiteManifest;
    if (site.format !== 'probsem-site' || site.formatVersion !== 1) throw new Error(`${siteUrl} is not a probsem site of format version 1`);
    const s = site.sample;
    const [meta, images, post, words] = await Promise.all([
      fetchOk(site.model.json).then((r) => r.json() as Promise<ModelFile>),
      s ? bytes(s.images) : Promise.resolve(null),
      s ? bytes(s.posteriors) : Promise.resolve(null),
      site.words ? bytes(site.words.file) : Promise.resolve(null),
    ]);
    const blob = await cachedWeights(site.model.weights, meta);
    const model = modelFromWeights(meta, blob, site.model.weights) as unknown as ImageModel;
    let data: SampleData | null = null;
    if (s && images && post) {
      const { count, dim, kind } = s;
      const f = new Float32Array(post.buffer, post.byteOffset, post.byteLength / 4);
      const mean = f.subarray(0, count * dim);
      const items: ItemGaussians =
        kind === 'diag' ? { kind, dim, count, mean, variance: f.subarray(count * dim, 2 * count * dim) } : { kind, dim, count, mean, scaleTril: f.subarray(count * dim, count * dim * (1 + dim)) };
      data = { ids: s.ids, labels: s.labels, images, items };
    }
    const vectors = site.words && words ? new WordVectors(site.words.list, new Float32Array(words.buffer, words.byteOffset, words.byteLength / 4), site.words.dim, site.words.source) : null;
    const info: ExplorerInfo = {
      model: meta.model,
      latentDim: model.latentDim,
      classes: meta.classNames,
      image: site.image,
      datasetName: site.dataset.name,
      images: s?.count ?? 0,
      testImages: site.dataset.testImages,
      metrics: meta.metrics ?? null,
      methods: (['pca', 'tsne', 'umap'] as LatentMethod[]).filter((m) => site.maps[m]),
      home: `computed in this tab (TensorFlow.js, ${backend})`,
    };
    return new LocalExplorer(info, site, meta, model, data, vectors, site.maps);
  }

  /** The TensorFlow.js backend computing here. */
  get backend(): string {
    return tf.getBackend();
  }

  /** Whether this tab holds test image `id` (and so can show, annotate and search it). */
  has(id: number): boolean {
    return this.pos.has(id);
  }

  /** Whether the whole test split is here, so a search here ranks what the server's would. */
  get holdsSplit(): boolean {
    return this.data !== null && this.data.ids.length === this.site.dataset.testImages;
  }

  /**
   * The same site's images explored through a model trained in this tab (the Train view): their
   * posteriors and the PCA map are computed here, from the new weights.
   */
  withModel(meta: ModelFile, blob: Uint8Array): LocalExplorer {
    const model = modelFromWeights(meta, blob, 'the trained weights') as unknown as ImageModel;
    const d = this.sample();
    const count = d.ids.length;
    const items = encodeSplitGaussians(model, { images: d.images, labels: Uint8Array.from(d.labels), count }, this.pixels);
    const t0 = performance.now();
    const dim = items.dim;
    const xy = dim >= 2 ? pca2d(items.mean, count, dim) : Float64Array.from({ length: 2 * count }, (_, i) => (i % 2 ? 0 : items.mean[i >> 1]));
    const pca = { x: Array.from({ length: count }, (_, i) => xy[2 * i]), y: Array.from({ length: count }, (_, i) => xy[2 * i + 1]), seconds: (performance.now() - t0) / 1000 };
    const steps = meta.training?.steps ?? 0;
    const info: ExplorerInfo = { ...this.info, model: `${meta.model} trained in this tab (${steps} steps)`, latentDim: model.latentDim, metrics: null, methods: ['pca'] };
    // The site's word vectors answer only for a model trained on word vectors (the tab trains one-hot).
    const vectors = meta.labels?.kind === 'words' ? this.vectors : null;
    return new LocalExplorer(info, this.site, meta, model, { ...d, items }, vectors, { pca });
  }

  private sample(): SampleData {
    if (!this.data) throw new Error('the test images are on the server, not in this tab');
    return this.data;
  }

  private position(id: number): number {
    const i = this.pos.get(id);
    if (i === undefined) throw new Error(`image ${id} is not in the exported sample`);
    return i;
  }

  private imageFloat(id: number): Float32Array {
    const i = this.position(id);
    return Float32Array.from(this.sample().images.subarray(i * this.pixels, (i + 1) * this.pixels), (v) => v / 255);
  }

  async latent(method: LatentMethod): Promise<LatentResponse> {
    const m = this.maps[method];
    if (!m) throw new Error(`the ${method.toUpperCase()} map is not available for this model (export-web --maps; a model trained in the tab has PCA)`);
    const d = this.sample();
    return { method, ids: d.ids, x: m.x, y: m.y, labels: d.labels, classes: this.meta.classNames, seconds: m.seconds };
  }

  imageSrc(id: number, scale: number): string {
    const key = `${id}@${scale}`;
    let u = this.urls.get(key);
    if (!u) {
      u = pixelsUrl(this.sample().images, this.position(id), this.shape, scale, 255);
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
    res.image = { id, label: this.meta.classNames[this.sample().labels[this.position(id)]] };
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
    const d = this.sample();
    const q = prepareQuery(d.items.kind, d.items.dim, indexQuery(queryDistribution(this.model, this.meta, list, this.vectors)));
    const scratch = d.items.kind === 'full' ? new FullScratch(d.items.dim) : undefined;
    const kl = Array.from({ length: d.items.count }, (_, i) => exactKl(d.items, i, q, scratch));
    const best = kl.map((_, i) => i).sort((a, b) => kl[a] - kl[b] || a - b).slice(0, k);
    const scale = scaleFor(this.info, 56);
    return {
      labels: splitQuery(this.meta, list),
      results: best.map((i) => {
        const id = d.ids[i];
        return { id, label: this.meta.classNames[d.labels[i]], kl: kl[i], src: this.imageSrc(id, scale) };
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
