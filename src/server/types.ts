/**
 * The JSON shapes of the HTTP API (`docs/api.md`). Types only, with no imports, so the explorer
 * page (web/) shares them with the server.
 */

export interface ApiError {
  statusCode: number;
  /** The HTTP status text ("Bad Request"). */
  error: string;
  /** A stable machine-readable tag (UNKNOWN_WORD, PAYLOAD_TOO_LARGE, BAD_IMAGE, BUSY, …). */
  code: string;
  message: string;
  /** For UNKNOWN_WORD: the words that name no label. */
  words?: string[];
}

export interface HealthResponse {
  status: 'ok' | 'closing';
  uptimeSeconds: number;
  queue: { active: number; queued: number; maxActive: number; maxQueue: number };
}

export interface LimitsInfo {
  maxUploadBytes: number;
  maxImagePixels: number;
  /** Largest decoded picture in bytes (pixels × channels × bytes per sample, read from its header). */
  maxDecodeBytes: number;
  maxN: number;
  maxK: number;
  maxSteps: number;
  /** Model jobs at once: the worker pool's size. */
  maxConcurrent: number;
  /** Model jobs one connection may have running or queued. */
  maxPerConnection: number;
  maxQueue: number;
  requestTimeoutMs: number;
}

export interface ModelResponse {
  model: string;
  config: Record<string, unknown>;
  classes: string[];
  latentDim: number;
  image: { height: number; width: number };
  /** Whether the model has a label encoder (annotate, words and retrieval need one). */
  hasLabelEncoder: boolean;
  dataset: { name: string; testImages: number } & Record<string, unknown>;
  training: Record<string, unknown> | null;
  metrics: Record<string, unknown> | null;
  limits: LimitsInfo;
}

export interface LabelScore {
  label: string;
  probability: number;
  logLikelihood: number;
}

export interface AnnotateResponse {
  labels: LabelScore[];
  /** When a stored image was annotated by id: its id and true label. */
  image?: { id: number; label: string };
  /** With `reconstruct: true`: the posterior-mean reconstruction as a PNG data URL. */
  reconstruction?: string;
  /** For an uploaded picture: what it was and what was converted (note: null when nothing). */
  input?: { format: string; width: number; height: number; polarity: 'light-on-dark' | 'dark-on-light'; inverted: boolean; note: string | null };
}

export interface GenerateResponse {
  /** The labels the words (or label) resolved to. */
  labels: string[];
  seed: number;
  /** PNG data URLs, one per image. */
  images: string[];
}

export interface RetrieveHit {
  id: number;
  label: string;
  /** KL(query ‖ q(z|x)) in nats. */
  kl: number;
  /** Where the image is served as a PNG. */
  url: string;
}

export interface RetrieveResponse {
  labels: string[];
  results: RetrieveHit[];
}

export type LatentMethod = 'pca' | 'tsne' | 'umap';

export interface LatentResponse {
  method: LatentMethod;
  /** Columns, one entry per point: test image id, 2-D position, class index. */
  ids: number[];
  x: number[];
  y: number[];
  labels: number[];
  classes: string[];
  /** Seconds the map took to compute (once; later requests get the cached map). */
  seconds: number;
}

/**
 * `site.json` of a folder written by `probsem export-web` (docs/explorer.md): what the page loads to
 * compute in the browser. Paths are relative to the folder; binary files are little-endian.
 */
export interface SiteManifest {
  format: 'probsem-site';
  formatVersion: 1;
  createdAt: string;
  /**
   * Sent by `probsem serve` (GET /api/site) rather than written by `export-web`: the server is
   * there for whatever the page cannot do itself (the latent maps; a test split too large to send,
   * where `sample` is null; words beyond the shipped list).
   */
  served?: true;
  /** A copy of the run's model directory (model.json and its weights), which the CLI also reads. */
  model: { json: string; weights: string };
  dataset: { name: string; testImages: number };
  image: { height: number; width: number; channels: 1 | 3 };
  sample: {
    count: number;
    /** Test-split ids of the sampled images, ascending. */
    ids: number[];
    labels: number[];
    /** uint8 pixels, count × height × width × channels (RGB per pixel). */
    images: string;
    /** float32 posterior means [count × dim], then variances [count × dim] (diag) or lower-triangular factors [count × dim × dim] (full). */
    posteriors: string;
    kind: 'diag' | 'full';
    dim: number;
  } | null;
  /** Latent maps of the sample, computed at export; x and y per sampled image. */
  maps: Partial<Record<LatentMethod, { x: number[]; y: number[]; seconds: number }>>;
  /** Word-vector runs: a bounded word list and its vectors (float32 [count × dim]), so other words are queries too. */
  words: { file: string; list: string[]; dim: number; source: string } | null;
  /**
   * In-tab training's data (absent in older sites, null with `--no-train`): the shipped Fashion-MNIST
   * subset's gzipped IDX files, the dataset's content hash (for the trained run's provenance) and a
   * worker script that trains on probsem's wasm kernels.
   */
  train?: {
    name: string;
    hash: string;
    classNames: string[];
    files: { trainImages: string; trainLabels: string; testImages: string; testLabels: string };
    worker: string;
  } | null;
}
