import { ProbsemError } from '../../core/errors.js';
import { datasetHash, pixelsOf } from '../../data/dataset.js';
import { loadDataset } from '../../data/registry.js';
import { encodeSplit } from '../../runs/retrieval.js';
import { checkCompatible, loadImageModel, runDatasetName } from '../../runs/runs.js';
import { kmeans, normalizedMutualInformation, purity } from '../../analysis/clustering.js';
import { LINKAGES, type Linkage, agglomerative } from '../../analysis/agglomerative.js';
import { intOption, parse, strOption } from '../args.js';
import type { Command } from './index.js';

const note = (m: string) => process.stderr.write(`note: ${m}\n`);

export const clusterCommand: Command = {
  summary: "k-means or agglomerative clustering of a run's posterior means, scored against the labels (NMI, purity)",
  help: `probsem cluster --run DIR [--method kmeans|ward|average] [--k N] [--split test] [--seed S] [--restarts N] [--json]

  Clusters the posterior means q(z|x) of a split's images by k-means (k-means++ starts, Lloyd
  iterations, the start with the lowest inertia kept) and scores the clusters against the
  images' labels: NMI (mutual information over the arithmetic mean of the two entropies, as
  scikit-learn's default) and purity (each cluster counts its most frequent label).
  --method M       kmeans (default); ward or average: agglomerative clustering (every point alone,
                   the closest clusters merged until k are left; Ward merges the pair that least
                   increases the within-cluster sum of squares, average uses the mean distance),
                   exact, O(n²) memory: at most 20,000 points
  --k N            clusters (default: the number of classes)
  --split S        test (default) or train
  --seed S         seed of the k-means++ draws (default 0)
  --restarts N     k-means++ starts (default 10)
  --dataset D      images to cluster (default: the run's dataset); --data DIR where to find it
  --json           print one JSON object`,
  async run(argv) {
    const { values: v } = parse(argv, {
      run: { type: 'string' },
      k: { type: 'string' },
      split: { type: 'string' },
      seed: { type: 'string' },
      restarts: { type: 'string' },
      method: { type: 'string' },
      dataset: { type: 'string' },
      data: { type: 'string' },
      json: { type: 'boolean' },
    });
    const dir = strOption(v.run, 'run');
    const split = strOption(v.split, 'split', 'test');
    if (split !== 'test' && split !== 'train') throw new ProbsemError(`--split must be test or train, got '${split}'`, 'BAD_OPTION');
    const seed = intOption(v.seed, 'seed', 0, 0);
    const restarts = intOption(v.restarts, 'restarts', 10, 1, 1000);
    const method = strOption(v.method, 'method', 'kmeans');
    if (method !== 'kmeans' && !(LINKAGES as readonly string[]).includes(method)) {
      throw new ProbsemError(`--method must be kmeans, ${LINKAGES.join(' or ')}, got '${method}'`, 'BAD_OPTION');
    }
    const { model, meta } = loadImageModel(dir);
    const ds = await loadDataset(runDatasetName(meta, v.dataset as string | undefined, (m) => process.stderr.write(`note: ${m}\n`)), { dataDir: v.data as string | undefined, onNotice: note });
    checkCompatible(meta, ds);
    if (meta.dataset?.hash && meta.dataset.hash !== datasetHash(ds)) {
      note(`${dir} was trained on ${meta.dataset.name} (${meta.dataset.source ?? 'another copy'}); clustering the ${split} split of ${ds.name} from ${ds.source}`);
    }
    const images = ds[split];
    const k = intOption(v.k, 'k', ds.classNames.length, 1, images.count);
    if (images.labels2) note('two-label images: the clusters are scored against each image\'s first label');
    const t0 = performance.now();
    const post = encodeSplit(model, images, pixelsOf(ds));
    const r =
      method === 'kmeans'
        ? kmeans(post.mean, post.count, post.dim, { k, restarts, seed })
        : { ...agglomerative(post.mean, post.count, post.dim, { k, linkage: method as Linkage }), inertia: null };
    const seconds = (performance.now() - t0) / 1000;
    const nmi = normalizedMutualInformation(r.assignments, images.labels);
    const pur = purity(r.assignments, images.labels);
    // Each cluster's most frequent label and its share, largest clusters first.
    const clusters = r.sizes
      .map((size, c) => {
        const counts = new Array<number>(ds.classNames.length).fill(0);
        for (let i = 0; i < images.count; i++) if (r.assignments[i] === c) counts[images.labels[i]]++;
        const top = counts.indexOf(Math.max(...counts));
        return { cluster: c, size, majority: ds.classNames[top], share: size > 0 ? counts[top] / size : 0 };
      })
      .sort((a, b) => b.size - a.size || a.cluster - b.cluster);
    const result = {
      run: dir,
      model: meta.model,
      dataset: ds.name,
      split,
      points: post.count,
      latent: post.dim,
      method,
      k,
      ...(method === 'kmeans' ? { restarts, seed } : {}),
      inertia: r.inertia,
      nmi,
      purity: pur,
      clusters,
      seconds: +seconds.toFixed(2),
    };
    if (v.json) {
      process.stdout.write(JSON.stringify(result) + '\n');
      return 0;
    }
    const out = [
      method === 'kmeans'
        ? `k-means of ${post.count} ${split} posterior means (${meta.model}, latent ${post.dim}): k = ${k}, best of ${restarts} starts (seed ${seed}), inertia ${r.inertia!.toPrecision(6)}, ${seconds.toFixed(1)} s`
        : `${method}-linkage agglomerative clustering of ${post.count} ${split} posterior means (${meta.model}, latent ${post.dim}): k = ${k}, ${seconds.toFixed(1)} s`,
      `NMI ${nmi.toFixed(4)} (arithmetic mean of entropies)   purity ${pur.toFixed(4)}`,
      ...clusters.map((c) => `  cluster ${String(c.cluster).padStart(3)}  ${String(c.size).padStart(6)} images  ${(100 * c.share).toFixed(1).padStart(5)} % ${c.majority}`),
    ];
    process.stdout.write(out.join('\n') + '\n');
    return 0;
  },
};
