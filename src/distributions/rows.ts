/**
 * The fast path's distribution maths on plain float arrays: batches of diagonal Gaussians stored
 * as rows [mean | log-variance] (width 2·dim), and categorical cross-entropy from logits, each
 * with its gradient written next to it. Same formulas as the tfjs versions (gaussian.ts, kl.ts).
 * Offsets are element indices into one array (the kernels' heap), so no copies are made.
 */

export interface DiagKlRows {
  rows: number;
  dim: number;
  /** Offset of q's rows. */
  q: number;
  /** Offset of p's rows, or null for N(0, I). */
  p: number | null;
  /** The gradient is of weight · KL (per row; the caller folds in any batch mean). */
  weight: number;
  /** Where d(weight·KL)/d(q rows) goes, or null. */
  gq: number | null;
  /** Where d(weight·KL)/d(p rows) goes, or null. */
  gp: number | null;
  /** Add into gq instead of overwriting it. */
  addToGq: boolean;
  /** Add into gp instead of overwriting it. */
  addToGp: boolean;
}

/**
 * Σ over rows of KL(q_i ‖ p_i) = ½ Σ_j [lv_p − lv_q + (e^{lv_q} + (μ_q − μ_p)²) e^{−lv_p} − 1],
 * with its gradient with respect to both sides' means and log-variances.
 */
export function diagKlRows(h: Float32Array, o: DiagKlRows): number {
  const { rows, dim, weight: w } = o;
  const width = 2 * dim;
  let sum = 0;
  for (let i = 0; i < rows; i++) {
    const qr = o.q + i * width;
    const pr = o.p === null ? -1 : o.p + i * width;
    for (let j = 0; j < dim; j++) {
      const mu = h[qr + j];
      const lv = h[qr + dim + j];
      const mp = pr >= 0 ? h[pr + j] : 0;
      const lvp = pr >= 0 ? h[pr + dim + j] : 0;
      const varQ = Math.exp(lv);
      const invP = Math.exp(-lvp);
      const d = mu - mp;
      const quad = (varQ + d * d) * invP;
      sum += 0.5 * (lvp - lv + quad - 1);
      if (o.gq !== null) put(h, o.gq + i * width + j, dim, w * d * invP, w * 0.5 * (varQ * invP - 1), o.addToGq);
      if (o.gp !== null) put(h, o.gp + i * width + j, dim, -w * d * invP, w * 0.5 * (1 - quad), o.addToGp);
    }
  }
  return sum;
}

/** Writes (or adds) a mean gradient at `at` and its log-variance gradient `dim` further on. */
function put(h: Float32Array, at: number, dim: number, gMean: number, gLogVar: number, add: boolean): void {
  if (add) {
    h[at] += gMean;
    h[at + dim] += gLogVar;
  } else {
    h[at] = gMean;
    h[at + dim] = gLogVar;
  }
}

/**
 * Σ over rows of −log softmax(logits_i)[label_i], and its gradient weight · (softmax − onehot)
 * written (overwriting) at `g`. logits and g are [rows, classes] at the given offsets.
 */
export function softmaxCrossEntropyRows(h: Float32Array, logits: number, rows: number, classes: number, labels: Int32Array, weight: number, g: number): number {
  let sum = 0;
  for (let i = 0; i < rows; i++) {
    const r = logits + i * classes;
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, h[r + c]);
    let z = 0;
    for (let c = 0; c < classes; c++) z += Math.exp(h[r + c] - max);
    const label = labels[i];
    sum += max + Math.log(z) - h[r + label];
    for (let c = 0; c < classes; c++) {
      const p = Math.exp(h[r + c] - max) / z;
      h[g + i * classes + c] = weight * (p - (c === label ? 1 : 0));
    }
  }
  return sum;
}

/**
 * z = μ + e^{lv/2} ε for Gaussian rows at q ([rows, 2·dim]) and noise eps ([rows, dim]), written
 * at z. `sampleRowsBackward` is its backward pass: given dz, it writes dμ = dz and
 * dlv = dz · ε · ½e^{lv/2} at gq (overwriting; KL terms are then added on top).
 */
export function sampleRows(h: Float32Array, q: number, eps: Float32Array, rows: number, dim: number, z: number): void {
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < dim; j++) {
      const r = q + i * 2 * dim;
      h[z + i * dim + j] = h[r + j] + Math.exp(0.5 * h[r + dim + j]) * eps[i * dim + j];
    }
  }
}

export function sampleRowsBackward(h: Float32Array, q: number, eps: Float32Array, rows: number, dim: number, dz: number, gq: number): void {
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < dim; j++) {
      const r = i * 2 * dim;
      const g = h[dz + i * dim + j];
      h[gq + r + j] = g;
      h[gq + r + dim + j] = g * eps[i * dim + j] * 0.5 * Math.exp(0.5 * h[q + r + dim + j]);
    }
  }
}
