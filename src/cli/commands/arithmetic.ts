import { dirname } from 'node:path';
import { ensureDir, writeFileAtomicSync } from '../../core/files.js';
import { encodeGridPng } from '../../data/png.js';
import { loadDataset } from '../../data/registry.js';
import { latentArithmetic, parseOperand } from '../../runs/latent-arithmetic.js';
import { checkCompatible, loadImageModel, runDatasetName, runImageShape } from '../../runs/runs.js';
import { runWordVectors, splitQuery } from '../../runs/words.js';
import { intOption, parse, strOption } from '../args.js';
import type { Command } from './index.js';

export const arithmeticCommand: Command = {
  summary: 'latent arithmetic: decode z(a) − z(minus) + z(plus) (PNG)',
  help: `probsem arithmetic --run DIR --a X --minus Y --plus Z [--out row.png] [--json]

  Decodes a, minus, plus and a − minus + plus in one row of four images. Each operand is a label
  (runs trained with --labels words take any words their vectors know) or #ID, a test image:
  a label is the mean of q(z|l), or for models without a label encoder (vae, tvae, autoencoders)
  the mean of its test images' posterior means; an image is its posterior mean. Prints the class
  nearest to the result. Example: --a '#17' --minus sneaker --plus 'ankle boot'.
  --out FILE       PNG of the four images (default: none, print only)
  --scale N        pixel upscaling of each image (default 3)
  --dataset D      the dataset of #ID and of class centroids (default: the run's); --data DIR
  --json           print the nearest class and the four latent points as JSON`,
  async run(argv) {
    const { values: v } = parse(argv, {
      run: { type: 'string' },
      a: { type: 'string' },
      minus: { type: 'string' },
      plus: { type: 'string' },
      out: { type: 'string' },
      scale: { type: 'string' },
      dataset: { type: 'string' },
      data: { type: 'string' },
      json: { type: 'boolean' },
    });
    const [a, minus, plus] = (['a', 'minus', 'plus'] as const).map((n) => parseOperand(strOption(v[n], n)));
    const scale = intOption(v.scale, 'scale', 3, 1, 16);
    const { model, meta } = loadImageModel(strOption(v.run, 'run'));
    const needsData = [a, minus, plus].some((op) => op.kind === 'image') || !model.encodeLabels;
    const ds = needsData
      ? await loadDataset(runDatasetName(meta, v.dataset as string | undefined, (m) => process.stderr.write(`note: ${m}\n`)), { dataDir: v.data as string | undefined })
      : null;
    if (ds) checkCompatible(meta, ds);
    const words = [a, minus, plus].flatMap((op) => (op.kind === 'label' ? [op.text] : []));
    const vectors = await runWordVectors(meta, splitQuery(meta, words), { onNotice: (m) => process.stderr.write(`note: ${m}\n`) });
    const r = latentArithmetic({ model, meta, ds, vectors }, a, minus, plus);
    const out = v.out as string | undefined;
    if (out) {
      await ensureDir(dirname(out));
      writeFileAtomicSync(out, encodeGridPng(r.images, 4, { cols: 4, ...runImageShape(meta), scale }));
    }
    const show = (op: typeof a) => (op.kind === 'image' ? `#${op.id}` : `'${op.text}'`);
    if (v.json) {
      const k = model.latentDim;
      const row = (i: number) => Array.from(r.z.subarray(i * k, (i + 1) * k));
      process.stdout.write(JSON.stringify({ nearestClass: r.nearestClass, z: { a: row(0), minus: row(1), plus: row(2), result: row(3) }, out: out ?? null }) + '\n');
    } else {
      process.stdout.write(
        `${show(a)} − ${show(minus)} + ${show(plus)}: nearest class ${r.nearestClass.label} (distance ${r.nearestClass.distance.toFixed(3)})` +
          (out ? `; wrote a, minus, plus, result to ${out}` : '') +
          '\n',
      );
    }
    return 0;
  },
};
