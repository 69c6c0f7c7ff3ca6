/**
 * The Train view's worker: loads the site's copy of the Fashion-MNIST subset, trains a PSE* with
 * `TrainSession` on probsem's wasm kernels (one thread: a static site has no SharedArrayBuffer),
 * and reports the losses and a PCA latent map as it goes, so the page stays responsive. At the end
 * (or on Stop) it sends back the run: model.json, the weights, and a ZIP the CLI loads.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { pca2d, sampleIndices } from '../../src/analysis/projection.js';
import { sha256Hex } from '../../src/core/sha256.js';
import { writeZip } from '../../src/core/zip.js';
import type { Dataset, Split } from '../../src/data/dataset.js';
import { parseIdx } from '../../src/data/idx.js';
import { modelJsonText } from '../../src/models/persist.js';
import { TrainSession } from '../../src/train/session.js';
import type { FromWorker, ToWorker, TrainSettings } from './train-protocol.js';

const post = (m: FromWorker, transfer: Transferable[] = []) => (self as unknown as Worker).postMessage(m, transfer);
/** Test images on the live map. */
const MAP_IMAGES = 500;
/** The map is refreshed at most this often (encoding and PCA take a moment). */
const MAP_EVERY_MS = 1500;
/** Steps between looks at the message queue (a Stop). */
const CHUNK = 5;

let stopRequested = false;

async function gunzipped(url: string): Promise<Uint8Array> {
  const res = await fetch(url);
  if (!res.ok || !res.body) throw new Error(`${url}: HTTP ${res.status} (is the whole exported folder served?)`);
  return new Uint8Array(await new Response(res.body.pipeThrough(new DecompressionStream('gzip'))).arrayBuffer());
}

async function loadSubset(base: string, t: NonNullable<Extract<ToWorker, { type: 'start' }>['train']>): Promise<Dataset> {
  const url = (rel: string) => new URL(rel, base).href;
  const [ti, tl, si, sl] = await Promise.all([t.files.trainImages, t.files.trainLabels, t.files.testImages, t.files.testLabels].map((f) => gunzipped(url(f))));
  const split = (images: Uint8Array, labels: Uint8Array, what: string): Split => {
    const im = parseIdx(images, `${what} images`);
    const lb = parseIdx(labels, `${what} labels`);
    if (im.dims.length !== 3 || im.dims[1] !== 28 || im.dims[2] !== 28 || lb.dims[0] !== im.dims[0]) throw new Error(`the ${what} files are not 28×28 images with one label each`);
    return { images: im.data, labels: lb.data, count: im.dims[0] };
  };
  return { name: t.name, source: base, height: 28, width: 28, classNames: t.classNames, train: split(ti, tl, 'training'), test: split(si, sl, 'test') };
}

function mapOf(s: TrainSession, ids: number[], labels: number[]): { x: number[]; y: number[]; labels: number[] } {
  const dim = s.options.latent;
  const means = s.encodeMeans(ids);
  // One latent dimension has no second axis: the map is then that dimension against zero.
  const xy = dim >= 2 ? pca2d(means, ids.length, dim) : Float64Array.from({ length: 2 * ids.length }, (_, i) => (i % 2 ? 0 : means[i >> 1]));
  return { x: ids.map((_, i) => xy[2 * i]), y: ids.map((_, i) => xy[2 * i + 1]), labels };
}

async function run(base: string, train: NonNullable<Extract<ToWorker, { type: 'start' }>['train']>, st: TrainSettings): Promise<void> {
  await tf.setBackend('cpu');
  const ds = await loadSubset(base, train);
  const s = await TrainSession.create(ds, { latent: st.latent, width: st.width, batchSize: st.batchSize, seed: st.seed, threads: 1 });
  const ids = sampleIndices(ds.test.count, MAP_IMAGES, st.seed);
  const labels = ids.map((i) => ds.test.labels[i]);
  const log: string[] = [];
  let windowSum = 0;
  let windowN = 0;
  let lastMap = -Infinity;
  let pending: number[] = [];
  let trainMs = 0;
  let lastPost = performance.now();
  try {
    while (s.steps < st.steps && !stopRequested) {
      const t0 = performance.now();
      const terms = s.step(Math.min(CHUNK, st.steps - s.steps));
      trainMs += performance.now() - t0;
      for (const t of terms) {
        pending.push(t.loss);
        windowSum += t.loss;
        windowN++;
      }
      // train.jsonl as `probsem train` writes it: mean loss every 50 steps (and at the end).
      if (s.steps % 50 === 0 || s.steps === st.steps) {
        log.push(JSON.stringify({ step: s.steps, msPerStep: Math.round((trainMs / s.steps) * 1e4) / 1e4, loss: Math.round((windowSum / windowN) * 1e4) / 1e4 }));
        windowSum = 0;
        windowN = 0;
      }
      const now = performance.now();
      const map = now - lastMap > MAP_EVERY_MS || s.steps === st.steps ? mapOf(s, ids, labels) : undefined;
      if (map) lastMap = performance.now();
      if (map || now - lastPost > 100) {
        post({ type: 'progress', step: s.steps, steps: st.steps, losses: pending, msPerStep: trainMs / s.steps, map });
        pending = [];
        lastPost = now;
      }
      // Lets a Stop message in.
      await new Promise((r) => setTimeout(r, 0));
    }
    if (s.steps === 0) throw new Error('stopped before the first step: there is no model to keep');
    if (windowN > 0) log.push(JSON.stringify({ step: s.steps, msPerStep: Math.round((trainMs / s.steps) * 1e4) / 1e4, loss: Math.round((windowSum / windowN) * 1e4) / 1e4 }));
    post({ type: 'progress', step: s.steps, steps: st.steps, losses: pending, msPerStep: trainMs / Math.max(1, s.steps), map: mapOf(s, ids, labels) });
    const { meta, blob } = s.modelFile(train.hash, sha256Hex, 'probsem wasm kernels (browser worker, 1 thread)');
    const name = `pse-star-${st.latent}d-s${st.seed}-tab`;
    const enc = new TextEncoder();
    const modelJson = modelJsonText(meta);
    const zip = writeZip([
      { name: `${name}/model.json`, data: enc.encode(modelJson) },
      { name: `${name}/${meta.weights.file}`, data: blob },
      { name: `${name}/train.jsonl`, data: enc.encode(log.map((l) => l + '\n').join('')) },
    ]);
    const weights = blob.slice().buffer as ArrayBuffer;
    post({ type: 'done', step: s.steps, modelJson, weights, zip: zip.buffer as ArrayBuffer, name, msPerStep: trainMs / Math.max(1, s.steps), fma: s.fma }, [weights, zip.buffer as ArrayBuffer]);
  } finally {
    await s.dispose();
  }
}

self.onmessage = (ev: MessageEvent<ToWorker>) => {
  const m = ev.data;
  if (m.type === 'stop') {
    stopRequested = true;
    return;
  }
  stopRequested = false;
  run(m.base, m.train, m.settings).catch((e: unknown) => post({ type: 'error', message: e instanceof Error ? e.message : String(e) }));
};
