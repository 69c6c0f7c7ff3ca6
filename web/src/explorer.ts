/**
 * What the explorer page asks of a model, with two homes: `RemoteExplorer` (remote.ts) asks a
 * `probsem serve` process over its JSON API; `LocalExplorer` (local.ts) computes in the tab with
 * TensorFlow.js from a folder written by `probsem export-web`. The page (main.ts) sees only this
 * interface, so its UI logic exists once.
 */
import type { AnnotateResponse, LatentMethod, LatentResponse } from '../../src/server/types.js';

export interface ExplorerInfo {
  model: string;
  latentDim: number;
  classes: string[];
  image: { height: number; width: number; channels: 1 | 3 };
  datasetName: string;
  /** Images the map, the search and the ids cover (the exported sample, or the whole test split). */
  images: number;
  /** The test split's size (larger than `images` where a sample was exported). */
  testImages: number;
  metrics: Record<string, unknown> | null;
  /** Latent-map methods offered. */
  methods: LatentMethod[];
  /** Where the computing happens, for the page's header. */
  home: string;
}

export interface Hit {
  id: number;
  label: string;
  kl: number;
  /** The image (a URL the <img> can load). */
  src: string;
}

export interface Explorer {
  readonly info: ExplorerInfo;
  latent(method: LatentMethod): Promise<LatentResponse>;
  /** A stored image, `scale` times its size. */
  imageSrc(id: number, scale: number): string;
  annotateId(id: number, o: { reconstruct?: boolean; top?: number }): Promise<AnnotateResponse>;
  /** A drawn or dropped picture on a canvas; `invert`: dark-on-light, to be turned light-on-dark. */
  annotateCanvas(canvas: HTMLCanvasElement, invert: boolean): Promise<AnnotateResponse>;
  generate(words: string, n: number, seed: number): Promise<{ labels: string[]; images: string[] }>;
  retrieve(words: string, k: number): Promise<{ labels: string[]; results: Hit[] }>;
  /** A strip of `steps` frames side by side, each `scale` times the image size. */
  interpolate(from: string, to: string, steps: number, scale: number): Promise<Blob>;
}

/** The whole-number scale that shows an image about `px` CSS pixels wide (2 for 28-pixel images at 56). */
export function scaleFor(info: Pick<ExplorerInfo, 'image'>, px: number): number {
  return Math.max(1, Math.round(px / info.image.width));
}

/** The words of a query box: commas separate the members (as the server reads a string). */
export function wordList(text: string): string[] {
  return text.split(',').map((s) => s.trim()).filter(Boolean);
}
