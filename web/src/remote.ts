/** The explorer's server home: every computation is a call to `probsem serve`'s JSON API. */
import type { AnnotateResponse, ApiError, GenerateResponse, LatentMethod, LatentResponse, ModelResponse, RetrieveResponse } from '../../src/server/types.js';
import { type Explorer, type ExplorerInfo, type Hit, scaleFor } from './explorer.js';

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly body: Partial<ApiError>,
    readonly retryAfter: number | null,
  ) {
    super(body.message ?? `HTTP ${status}`);
  }
}

async function call(path: string, init?: RequestInit): Promise<Response> {
  const res = await fetch(path, init);
  if (res.ok) return res;
  let body: Partial<ApiError> = {};
  try {
    body = (await res.json()) as ApiError;
  } catch {
    body = { message: `HTTP ${res.status}` };
  }
  const ra = res.headers.get('retry-after');
  throw new ApiFailure(res.status, body, ra ? Number(ra) : null);
}

const api = async <T>(path: string, init?: RequestInit): Promise<T> => (await (await call(path, init)).json()) as T;
const post = (body: unknown): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

export class RemoteExplorer implements Explorer {
  private constructor(readonly info: ExplorerInfo) {}

  static async open(): Promise<RemoteExplorer> {
    const m = await api<ModelResponse>('/api/model');
    return new RemoteExplorer({
      model: m.model,
      latentDim: m.latentDim,
      classes: m.classes,
      image: { ...m.image, channels: m.dataset.channels === 3 ? 3 : 1 },
      datasetName: m.dataset.name,
      images: m.dataset.testImages,
      testImages: m.dataset.testImages,
      metrics: m.metrics,
      methods: ['pca', 'tsne', 'umap'],
      home: 'computed by the probsem server',
    });
  }

  async latent(method: LatentMethod): Promise<LatentResponse> {
    for (;;) {
      try {
        return await api<LatentResponse>(`/api/latent?method=${method}`);
      } catch (e) {
        // 503: still computing (or busy): wait as told and ask again.
        if (!(e instanceof ApiFailure && e.status === 503)) throw e;
        await new Promise((r) => setTimeout(r, 1000 * (e.retryAfter ?? 2)));
      }
    }
  }

  imageSrc(id: number, scale: number): string {
    return `/api/images/${id}?scale=${scale}`;
  }

  annotateId(id: number, o: { reconstruct?: boolean; top?: number }): Promise<AnnotateResponse> {
    return api<AnnotateResponse>('/api/annotate', post({ id, ...o }));
  }

  async annotateCanvas(canvas: HTMLCanvasElement, invert: boolean): Promise<AnnotateResponse> {
    const blob = await new Promise<Blob | null>((r) => canvas.toBlob(r, 'image/png'));
    if (!blob) throw new Error('the drawing could not be read');
    return api<AnnotateResponse>(`/api/annotate?invert=${invert}`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: blob });
  }

  generate(words: string, n: number, seed: number): Promise<GenerateResponse> {
    return api<GenerateResponse>('/api/generate', post({ words, n, seed }));
  }

  async retrieve(words: string, k: number): Promise<{ labels: string[]; results: Hit[] }> {
    const r = await api<RetrieveResponse>('/api/retrieve', post({ words, k }));
    return { labels: r.labels, results: r.results.map((h) => ({ id: h.id, label: h.label, kl: h.kl, src: `${h.url}?scale=${scaleFor(this.info, 56)}` })) };
  }

  async interpolate(from: string, to: string, steps: number, scale: number): Promise<Blob> {
    return (await call('/api/interpolate', post({ from, to, steps, scale }))).blob();
  }
}

