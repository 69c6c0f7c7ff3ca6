/**
 * `probsem export-web`: the explorer as a static folder that any file server can serve, computing
 * in the browser (docs/explorer.md). It holds the page (index.html with a `probsem-site` meta tag,
 * the one bundled script, the stylesheet, tfjs's wasm binaries), a copy of the run's model
 * directory, a seeded sample of test images with their posteriors, the sample's latent maps, and
 * for word-vector runs a bounded word list with its vectors. The folder is written beside the
 * target and renamed into place, so a failed export leaves nothing half-written.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ProbsemError } from '../core/errors.js';
import { writeFileAtomicSync } from '../core/files.js';
import { FASHION_MNIST_CLASSES, datasetHash, pixelsOf } from '../data/dataset.js';
import { SHIPPED_SUBSET_DIR, loadDataset } from '../data/registry.js';
import { encodeSplitGaussians } from '../runs/retrieval.js';
import { runWordVectors } from '../runs/words.js';
import { type Method, sampleIndices } from './latent.js';
import { ModelService } from './service.js';
import { SITE_MAX_WORDS, siteWords } from './site.js';
import type { SiteManifest } from './types.js';
import { loadWebAssets } from './web.js';

export interface ExportWebOptions {
  runDir: string;
  out: string;
  /** Test images shipped (a seeded sample; the whole split when smaller). */
  sample?: number;
  maps?: Method[];
  /** Word-vector runs: words shipped beyond the class phrases. */
  maxWords?: number;
  dataset?: string;
  dataDir?: string;
  /** Ship the Fashion-MNIST subset for in-tab training (default true; about 5.3 MB). */
  train?: boolean;
  onNotice?: (m: string) => void;
  onProgress?: (m: string) => void;
}

export interface ExportWebResult {
  dir: string;
  files: { path: string; bytes: number }[];
  bytes: number;
  sample: number;
}

function checkOut(out: string): void {
  if (!existsSync(out)) {
    if (!existsSync(dirname(out))) throw new ProbsemError(`cannot write ${out}: its parent folder ${dirname(out)} does not exist`, 'NOT_FOUND');
    return;
  }
  if (!statSync(out).isDirectory()) throw new ProbsemError(`--out ${out} is a file, not a folder`, 'BAD_OPTION');
  if (readdirSync(out).length > 0) throw new ProbsemError(`--out ${out} is not empty: give a new or empty folder (nothing is overwritten)`, 'BAD_OPTION');
}

const f32 = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

export async function exportWeb(o: ExportWebOptions): Promise<ExportWebResult> {
  const out = resolve(o.out);
  checkOut(out);
  const sampleSize = o.sample ?? 1000;
  if (!Number.isInteger(sampleSize) || sampleSize < 1) throw new ProbsemError(`the sample size must be a positive integer, got ${sampleSize}`, 'BAD_OPTION');
  const maps = o.maps ?? ['pca', 'tsne', 'umap'];
  const progress = o.onProgress ?? (() => {});

  progress('loading the run and its dataset');
  const svc = await ModelService.load(o.runDir, { dataset: o.dataset, dataDir: o.dataDir, latentSample: sampleSize, onNotice: o.onNotice, saveIndex: false });
  const { model, meta, dataset } = svc;
  const test = dataset.test;
  const pixels = pixelsOf(dataset);
  // The ids the server's latent maps use for this sample size, so both homes map the same images.
  const ids = sampleIndices(test.count, sampleSize);
  const images = new Uint8Array(ids.length * pixels);
  ids.forEach((id, r) => images.set(test.images.subarray(id * pixels, (id + 1) * pixels), r * pixels));
  const labels = Uint8Array.from(ids, (id) => test.labels[id]);

  progress(`encoding ${ids.length} test images`);
  const g = encodeSplitGaussians(model, { images, labels, count: ids.length }, pixels);
  const second = g.kind === 'diag' ? g.variance : g.scaleTril;
  const posteriors = new Uint8Array(g.mean.byteLength + second.byteLength);
  posteriors.set(f32(g.mean), 0);
  posteriors.set(f32(second), g.mean.byteLength);

  const mapData: SiteManifest['maps'] = {};
  for (const m of maps) {
    progress(`computing the ${m.toUpperCase()} map`);
    const r = await svc.latent(m);
    mapData[m] = { x: r.x, y: r.y, seconds: r.seconds };
  }

  let words: ReturnType<typeof siteWords> = null;
  if (meta.labels?.kind === 'words') {
    progress('choosing the word list');
    const wv = await runWordVectors(meta, [], { neighbours: true, onNotice: o.onNotice });
    if (wv) words = siteWords(meta, wv, o.maxWords ?? SITE_MAX_WORDS);
  }

  // In-tab training uses the shipped subset; the trained model is explored on this site's images, so
  // the run must take the same 28×28 grey pictures of the same classes.
  let train: SiteManifest['train'] = null;
  if (o.train ?? true) {
    const fits = dataset.height === 28 && dataset.width === 28 && (dataset.channels ?? 1) === 1 && JSON.stringify(meta.classNames) === JSON.stringify(FASHION_MNIST_CLASSES);
    if (fits) {
      const subset = await loadDataset('fashion-mnist-subset');
      const files = { trainImages: 'train-images-idx3-ubyte.gz', trainLabels: 'train-labels-idx1-ubyte.gz', testImages: 't10k-images-idx3-ubyte.gz', testLabels: 't10k-labels-idx1-ubyte.gz' };
      train = { name: 'fashion-mnist-subset', hash: datasetHash(subset), classNames: subset.classNames, files: Object.fromEntries(Object.entries(files).map(([k, f]) => [k, `train/${f}`])) as typeof files, worker: 'static/train-worker.js' };
    } else {
      o.onNotice?.('in-tab training left out: it trains on the Fashion-MNIST subset, and this run takes other pictures or classes');
    }
  }

  progress('bundling the page');
  const assets = await loadWebAssets(undefined, { minify: true, worker: train !== null });
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  const files: { path: string; bytes: number }[] = [];
  const put = (rel: string, data: Uint8Array | string) => {
    mkdirSync(dirname(join(tmp, rel)), { recursive: true });
    writeFileAtomicSync(join(tmp, rel), data);
    files.push({ path: rel, bytes: typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength });
  };
  try {
    const html = assets.get('index.html')!.body.toString('utf8');
    if (!html.includes('</head>')) throw new ProbsemError('the explorer page has no </head> to mark as a static site', 'NOT_FOUND');
    put('index.html', html.replace('</head>', '  <meta name="probsem-site" content="site.json">\n</head>'));
    for (const [name, a] of assets) if (name !== 'index.html') put(`static/${name}`, a.body);
    // The run's model directory as it is (checksums intact), so the CLI can read the copy too.
    for (const name of ['model.json', meta.weights.file]) {
      mkdirSync(join(tmp, 'model'), { recursive: true });
      copyFileSync(join(o.runDir, name), join(tmp, 'model', name));
      files.push({ path: `model/${name}`, bytes: statSync(join(tmp, 'model', name)).size });
    }
    if (train) {
      mkdirSync(join(tmp, 'train'), { recursive: true });
      for (const rel of Object.values(train.files)) {
        copyFileSync(join(SHIPPED_SUBSET_DIR, basename(rel)), join(tmp, rel));
        files.push({ path: rel, bytes: statSync(join(tmp, rel)).size });
      }
    }
    put('sample/images.bin', images);
    put('sample/posteriors.bin', posteriors);
    if (words) put('words/vectors.bin', f32(words.data));
    const site: SiteManifest = {
      format: 'probsem-site',
      formatVersion: 1,
      createdAt: new Date().toISOString(),
      model: { json: 'model/model.json', weights: `model/${meta.weights.file}` },
      dataset: { name: basename(dataset.name), testImages: test.count },
      image: { height: dataset.height, width: dataset.width, channels: dataset.channels === 3 ? 3 : 1 },
      sample: { count: ids.length, ids, labels: Array.from(labels), images: 'sample/images.bin', posteriors: 'sample/posteriors.bin', kind: g.kind, dim: g.dim },
      maps: mapData,
      words: words ? { file: 'words/vectors.bin', list: words.list, dim: words.dim, source: words.source } : null,
      train,
    };
    put('site.json', JSON.stringify(site));
    checkOut(out);
    if (existsSync(out)) rmSync(out, { recursive: true });
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return { dir: out, files, bytes: files.reduce((a, f) => a + f.bytes, 0), sample: ids.length };
}
