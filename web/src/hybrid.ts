/**
 * The explorer under `probsem serve`: the model runs in this tab (a `LocalExplorer` over the
 * server's /api/site, the same code as the static export) and the server answers only what the tab
 * cannot: the latent maps (computed once there, for every visitor), and — when the server did not
 * send the test split because it is larger than its page-data limit — the test images, annotating
 * them by id and searching them. Words the shipped list does not hold are asked of the server too,
 * whose word vectors are complete.
 */
import { UnknownWordError } from '../../src/text/word-vectors.js';
import type { AnnotateResponse, LatentMethod, LatentResponse } from '../../src/server/types.js';
import type { Explorer, ExplorerInfo, Hit } from './explorer.js';
import { LocalExplorer } from './local.js';
import type { RemoteExplorer } from './remote.js';

export class HybridExplorer implements Explorer {
  private constructor(
    readonly info: ExplorerInfo,
    readonly local: LocalExplorer,
    private readonly remote: RemoteExplorer,
  ) {}

  static async open(remote: RemoteExplorer): Promise<HybridExplorer> {
    const local = await LocalExplorer.open('api/site');
    const serverDoes = local.holdsSplit ? 'latent maps' : 'latent maps, test images and search';
    const info: ExplorerInfo = { ...remote.info, home: `computed in this tab (TensorFlow.js, ${local.backend}); ${serverDoes} by the probsem server` };
    return new HybridExplorer(info, local, remote);
  }

  private async either<T>(inTab: (() => Promise<T>) | null, onServer: () => Promise<T>): Promise<T> {
    if (inTab) {
      try {
        return await inTab();
      } catch (e) {
        // A word beyond the shipped list may still be one the server's vectors know.
        if (!(e instanceof UnknownWordError)) throw e;
      }
    }
    return onServer();
  }

  latent(method: LatentMethod): Promise<LatentResponse> {
    return this.either(null, () => this.remote.latent(method));
  }

  imageSrc(id: number, scale: number): string {
    return this.local.has(id) ? this.local.imageSrc(id, scale) : this.remote.imageSrc(id, scale);
  }

  annotateId(id: number, o: { reconstruct?: boolean; top?: number }): Promise<AnnotateResponse> {
    return this.either(this.local.has(id) ? () => this.local.annotateId(id, o) : null, () => this.remote.annotateId(id, o));
  }

  annotateCanvas(canvas: HTMLCanvasElement, invert: boolean): Promise<AnnotateResponse> {
    return this.either(() => this.local.annotateCanvas(canvas, invert), () => this.remote.annotateCanvas(canvas, invert));
  }

  generate(words: string, n: number, seed: number): Promise<{ labels: string[]; images: string[] }> {
    return this.either(() => this.local.generate(words, n, seed), () => this.remote.generate(words, n, seed));
  }

  retrieve(words: string, k: number): Promise<{ labels: string[]; results: Hit[] }> {
    return this.either(this.local.holdsSplit ? () => this.local.retrieve(words, k) : null, () => this.remote.retrieve(words, k));
  }

  interpolate(from: string, to: string, steps: number, scale: number): Promise<Blob> {
    return this.either(() => this.local.interpolate(from, to, steps, scale), () => this.remote.interpolate(from, to, steps, scale));
  }
}
