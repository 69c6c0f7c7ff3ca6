/**
 * What the explorer page needs to compute in the tab, in the one format both of its homes share
 * (`SiteManifest`, types.ts): the model's file and weights, the test images with their posteriors,
 * and for word-vector runs a bounded word list. `probsem export-web` writes it as a folder;
 * `probsem serve` sends it from memory at /api/site, with the test split left out when it is
 * larger than the page-data limit, in which case the page asks the server for what needs the split.
 */
import { pixelsOf } from '../data/dataset.js';
import { modelJsonText, readRunWeights } from '../models/persist.js';
import type { ModelFile } from '../models/persist.js';
import { tokenize, type WordVectors } from '../text/word-vectors.js';
import { lastComponent } from './service.js';
import type { ModelService } from './service.js';
import type { SiteManifest } from './types.js';
import { type Asset, asset } from './web.js';

/** Words a site ships beyond the class phrases, unless told otherwise. */
export const SITE_MAX_WORDS = 10_000;

/**
 * The words a site ships for a word-vector run, with their vectors: the class phrases' words first
 * (always), then each class's nearest words (what a visitor is likely to try), then the vectors'
 * own order up to `max`.
 */
export function siteWords(meta: ModelFile, wv: WordVectors, max = SITE_MAX_WORDS): { list: string[]; data: Float32Array; dim: number; source: string } | null {
  if (meta.labels?.kind !== 'words') return null;
  const keep = new Set<string>();
  for (const p of meta.labels.phrases) for (const t of tokenize(p)) if (wv.indexOf(t) >= 0) keep.add(wv.words[wv.indexOf(t)]);
  const c = meta.classNames.length;
  const per = Math.floor(Math.max(0, max - keep.size) / c);
  const rows = Float32Array.from(meta.labels.vectors);
  for (let k = 0; k < c && per > 0; k++) for (const n of wv.nearest(rows.subarray(k * wv.dim, (k + 1) * wv.dim), per)) keep.add(n.word);
  for (let i = 0; i < wv.size && keep.size < max; i++) keep.add(wv.words[i]);
  const list = [...keep];
  const data = new Float32Array(list.length * wv.dim);
  list.forEach((w, i) => data.set(wv.data.subarray(wv.indexOf(w) * wv.dim, (wv.indexOf(w) + 1) * wv.dim), i * wv.dim));
  return { list, data, dim: wv.dim, source: wv.source };
}

export interface ServedSite {
  manifest: SiteManifest;
  /** name → file, for GET /api/site/<name>. */
  files: Map<string, Asset>;
}

const bytesOf = (a: Float32Array | Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/**
 * The served run as a site: the test split's images and posteriors go to the page when together
 * they take at most `maxDataBytes`, else `sample` is null. The posteriors are the server's own (its
 * index of the split), so the page's retrieval ranks the same numbers the server's would.
 */
export function servedSite(service: ModelService, o: { maxDataBytes: number }): ServedSite {
  const { meta, dataset } = service;
  const test = dataset.test;
  const pixels = pixelsOf(dataset);
  const files = new Map<string, Asset>();
  const put = (name: string, body: Buffer) => files.set(name, asset(body, name));

  put('model.json', Buffer.from(modelJsonText(meta), 'utf8'));
  // Named by the weights' checksum: a new run behind the same server is a new URL.
  const weightsName = `weights-${meta.weights.sha256.slice(0, 16)}.bin`;
  put(weightsName, Buffer.from(readRunWeights(service.runDir, meta)));

  const index = service.index;
  const kind = index.kind;
  const dim = index.dim;
  const spreadPerItem = kind === 'diag' ? dim : dim * dim;
  const dataBytes = test.count * pixels + test.count * (dim + spreadPerItem) * 4;
  let sample: SiteManifest['sample'] = null;
  if (dataBytes <= o.maxDataBytes && test.count > 0) {
    const g = index.itemGaussians();
    const spread = g.kind === 'diag' ? g.variance : g.scaleTril;
    put('posteriors.bin', Buffer.concat([bytesOf(g.mean), bytesOf(spread)]));
    put('images.bin', Buffer.from(test.images.buffer, test.images.byteOffset, test.count * pixels));
    sample = {
      count: test.count,
      ids: Array.from({ length: test.count }, (_, i) => i),
      labels: Array.from({ length: test.count }, (_, i) => test.labels[i]),
      images: 'api/site/images.bin',
      posteriors: 'api/site/posteriors.bin',
      kind,
      dim,
    };
  }

  const wv = service.wordVectors ? siteWords(meta, service.wordVectors) : null;
  if (wv) put('words.bin', bytesOf(wv.data));

  const manifest: SiteManifest = {
    format: 'probsem-site',
    formatVersion: 1,
    createdAt: new Date().toISOString(),
    served: true,
    model: { json: 'api/site/model.json', weights: `api/site/${weightsName}` },
    dataset: { name: lastComponent(dataset.name), testImages: test.count },
    image: { height: dataset.height, width: dataset.width, channels: dataset.channels === 3 ? 3 : 1 },
    sample,
    maps: {},
    words: wv ? { file: 'api/site/words.bin', list: wv.list, dim: wv.dim, source: wv.source } : null,
    train: null,
  };
  return { manifest, files };
}
