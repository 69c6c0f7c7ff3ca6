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
