/**
 * `probsem serve`: a fastify server over one trained run — the JSON API of docs/api.md and the
 * explorer page (web/). Thin: every model computation is a library call made through
 * `ModelService`, one job at a time by default, behind a bounded queue.
 */
import type { Distance } from '../index/distances.js';
import http from 'node:http';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { ProbsemError } from '../core/errors.js';
import { UnknownWordError } from '../runs/retrieval.js';
import { DEFAULT_LIMITS, HttpError, Limiter, type ServeLimits } from './limits.js';
import { LATENT_METHODS, type Method, stopLatentWorkers } from './latent.js';
import { buildOpenApi } from './openapi.js';
import { routeDocs } from './schemas.js';
import { ModelService } from './service.js';
import type { ApiError, HealthResponse, LimitsInfo } from './types.js';
import { type Asset, loadWebAssets } from './web.js';

export interface ServeOptions {
  runDir: string;
  limits?: Partial<ServeLimits>;
  /** Dataset for retrieval and the latent map (default: the model's own). */
  dataset?: string;
  dataDir?: string;
  /** Folder of the explorer page (default: the repository's web/). */
  webDir?: string;
  /** fastify's logger option (default off). */
  logger?: boolean;
  onNotice?: (msg: string) => void;
}

export interface ProbsemServer {
  app: FastifyInstance;
  service: ModelService;
  limiter: Limiter;
  limits: ServeLimits;
  /** "METHOD /path" of every route, as registered. */
  routes: string[];
  /** Stops accepting requests, lets running ones finish, stops map workers. */
  close(): Promise<void>;
}

const STATUS_TEXT = http.STATUS_CODES;

function errorBody(statusCode: number, code: string, message: string, extra: Record<string, unknown> = {}): ApiError {
  return { statusCode, error: STATUS_TEXT[statusCode] ?? 'Error', code, message, ...extra };
}

/** Maps anything thrown in a handler to a status, a code and a message. */
function toHttp(err: unknown, maxUploadBytes: number): { status: number; body: ApiError; headers: Record<string, string> } {
  if (err instanceof HttpError) return { status: err.statusCode, body: errorBody(err.statusCode, err.code, err.message, err.extra), headers: err.headers };
  if (err instanceof UnknownWordError) return { status: 400, body: errorBody(400, err.code, err.message, { words: err.words }), headers: {} };
  if (err instanceof ProbsemError) {
    const status = err.code === 'NOT_FOUND' ? 404 : err.code === 'DATA_FORMAT' || err.code === 'BAD_OPTION' ? 400 : 500;
    return { status, body: errorBody(status, err.code === 'DATA_FORMAT' ? 'BAD_IMAGE' : status === 400 ? 'BAD_REQUEST' : err.code, err.message), headers: {} };
  }
  const e = err as FastifyError & { statusCode?: number; validation?: unknown };
  if (e && e.validation) return { status: 400, body: errorBody(400, 'BAD_REQUEST', e.message), headers: {} };
  const status = typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 600 ? e.statusCode : 500;
  if (status === 413) return { status, body: errorBody(413, 'PAYLOAD_TOO_LARGE', `the upload is larger than the limit of ${maxUploadBytes} bytes`), headers: {} };
  if (status === 415) return { status, body: errorBody(415, 'UNSUPPORTED_MEDIA_TYPE', e.message), headers: {} };
  if (status < 500) return { status, body: errorBody(status, status === 404 ? 'NOT_FOUND' : 'BAD_REQUEST', e.message), headers: {} };
  return { status, body: errorBody(status, 'INTERNAL', 'internal server error'), headers: {} };
}

function limitsInfo(l: ServeLimits): LimitsInfo {
  return {
    maxUploadBytes: l.maxUploadBytes,
    maxImagePixels: l.maxImagePixels,
    maxN: l.maxN,
    maxK: l.maxK,
    maxSteps: l.maxSteps,
    maxConcurrent: l.maxConcurrent,
    maxQueue: l.maxQueue,
    requestTimeoutMs: l.requestTimeoutMs,
  };
}

/** Words as given (a list, or one string split on commas), trimmed, empty ones dropped. */
function wordList(w: unknown): string[] | undefined {
  if (w === undefined) return undefined;
  const list = Array.isArray(w) ? w.map(String) : String(w).split(',');
  return list.map((s) => s.trim()).filter(Boolean);
}

function decodeBase64Image(s: string): Buffer {
  const m = /^data:[\w/+.-]*;base64,/.exec(s);
  const b64 = (m ? s.slice(m[0].length) : s).replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw new HttpError(400, 'BAD_IMAGE', '`image` is not base64');
  return Buffer.from(b64, 'base64');
}

export async function createServer(o: ServeOptions): Promise<ProbsemServer> {
  const limits: ServeLimits = { ...DEFAULT_LIMITS, ...(o.limits ?? {}) };
  const service = await ModelService.load(o.runDir, { dataset: o.dataset, dataDir: o.dataDir, onNotice: o.onNotice, latentSample: limits.latentSample });
  // Encode the test split now, so the first retrieval or map does not pay for it.
  void service.posteriors;
  const assets = await loadWebAssets(o.webDir);
  const limiter = new Limiter(limits.maxConcurrent, limits.maxQueue, limits.requestTimeoutMs);
  const docs = routeDocs(limits);
  const openapi = buildOpenApi(limits);
  const started = Date.now();
  let closing = false;

  const app = Fastify({
    logger: o.logger ?? false,
    bodyLimit: limits.maxUploadBytes,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // node's own timer: a request (headers and body) not fully received in time gets 408. The
    // check interval is shortened so short test timeouts fire promptly.
    serverFactory: (handler) =>
      http.createServer(
        {
          requestTimeout: limits.requestTimeoutMs,
          headersTimeout: limits.requestTimeoutMs,
          connectionsCheckingInterval: Math.max(100, Math.min(30_000, Math.floor(limits.requestTimeoutMs / 4))),
        },
        handler,
      ),
    ajv: { customOptions: { coerceTypes: 'array', useDefaults: true, removeAdditional: false, allErrors: false } },
  });

  const routes: string[] = [];
  app.addHook('onRoute', (r) => {
    for (const m of [r.method].flat()) if (m !== 'HEAD') routes.push(`${m} ${r.url}`);
  });
  await app.register(multipart, {
    limits: { fileSize: limits.maxUploadBytes, files: 1, fields: 8, fieldSize: 1024, parts: 10, headerPairs: 100 },
  });
  // Raw image bodies (any image/* type, so unsupported formats get a precise 415 from the sniffer).
  // JSON, images and multipart only: other bodies (text/plain included) are 415.
  app.removeContentTypeParser('text/plain');
  const raw = (_req: FastifyRequest, body: string | Buffer, done: (err: Error | null, body?: unknown) => void) => done(null, body);
  app.addContentTypeParser(/^image\/[\w.+-]+$/, { parseAs: 'buffer' }, raw);
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, raw);

  app.addHook('onRequest', async (req) => {
    // Refuse declared oversized bodies before reading them (multipart bypasses bodyLimit).
    const len = Number(req.headers['content-length']);
    if (Number.isFinite(len) && len > limits.maxUploadBytes + 64 * 1024) {
      throw new HttpError(413, 'PAYLOAD_TOO_LARGE', `the request body is ${len} bytes; at most ${limits.maxUploadBytes} are accepted`);
    }
  });
  app.addHook('onSend', async (_req, reply, payload) => {
    reply.header('x-content-type-options', 'nosniff');
    return payload;
  });

  app.setErrorHandler((err, req, reply) => {
    const { status, body, headers } = toHttp(err, limits.maxUploadBytes);
    if (status >= 500 && body.code === 'INTERNAL') req.log.error(err);
    void reply.code(status).headers(headers).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send(errorBody(404, 'NOT_FOUND', `no such resource: ${req.method} ${req.url.split('?')[0]}`));
  });

  const schemaOf = (key: string) => {
    const d = docs[key];
    const s: Record<string, unknown> = {};
    if (d.querystring) s.querystring = d.querystring;
    if (d.params) s.params = d.params;
    if (d.body) s.body = d.body;
    return s;
  };
  const png = (reply: FastifyReply, buf: Buffer, cache = false) =>
    reply.type('image/png').header('cache-control', cache ? 'public, max-age=3600' : 'no-store').send(buf);

  app.get('/api/health', async (): Promise<HealthResponse> => ({
    status: closing ? 'closing' : 'ok',
    uptimeSeconds: (Date.now() - started) / 1000,
    queue: limiter.stats,
  }));

  app.get('/api/model', async () => service.describe(limitsInfo(limits)));
  app.get('/api/openapi.json', async () => openapi);

  app.post('/api/annotate', {
    schema: schemaOf('annotate'),
    // A multipart body is read in the handler (as a stream); give the JSON schema an empty object.
    preValidation: async (req) => {
      if (req.isMultipart()) req.body = {};
    },
  }, async (req: FastifyRequest) => {
    const q = req.query as { invert?: boolean; top?: number; reconstruct?: boolean };
    // invert absent: decided per picture (dark-on-light ones are inverted).
    let opts = { invert: q.invert, top: q.top, reconstruct: Boolean(q.reconstruct) };
    let upload: Buffer | null = null;
    let pixels: unknown[] | null = null;
    let id: number | null = null;
    if (req.isMultipart()) {
      const file = await req.file();
      if (!file) throw new HttpError(400, 'BAD_REQUEST', 'the multipart body has no file part');
      upload = await file.toBuffer();
      const flag = (name: string) => {
        const f = file.fields[name] as { value?: unknown } | undefined;
        return f && 'value' in f ? ['1', 'true', 'on'].includes(String(f.value)) : undefined;
      };
      opts = { ...opts, invert: flag('invert') ?? opts.invert, reconstruct: flag('reconstruct') ?? opts.reconstruct };
    } else if (Buffer.isBuffer(req.body)) {
      upload = req.body;
    } else {
      const b = (req.body ?? {}) as { pixels?: unknown[]; image?: string; id?: number; invert?: boolean; top?: number; reconstruct?: boolean };
      const given = [b.pixels, b.image, b.id].filter((v) => v !== undefined).length;
      if (given !== 1) {
        throw new HttpError(400, 'BAD_REQUEST', 'send an image: a PNG/JPEG/WebP/GIF body, a multipart file, or JSON with exactly one of `pixels`, `image` (base64) or `id`');
      }
      opts = { invert: b.invert ?? opts.invert, top: b.top ?? opts.top, reconstruct: b.reconstruct ?? opts.reconstruct };
      if (b.image !== undefined) upload = decodeBase64Image(b.image);
      if (upload && upload.length > limits.maxUploadBytes) throw new HttpError(413, 'PAYLOAD_TOO_LARGE', `the image is ${upload.length} bytes; at most ${limits.maxUploadBytes} are accepted`);
      pixels = b.pixels ?? null;
      id = b.id ?? null;
    }
    return limiter.run(() => {
      if (id !== null) return service.annotateId(id, opts);
      if (upload) return service.annotateUpload(upload, { ...opts, maxPixels: limits.maxImagePixels });
      let grey = service.checkPixels(pixels!);
      if (opts.invert) grey = grey.map((v) => 1 - v);
      return service.annotate(grey, opts);
    });
  });

  app.post('/api/generate', { schema: schemaOf('generate') }, async (req) => {
    const b = req.body as { words?: unknown; label?: string; n: number; seed: number };
    if ((b.words === undefined) === (b.label === undefined)) throw new HttpError(400, 'BAD_REQUEST', 'give exactly one of `words` and `label`');
    const words = wordList(b.words);
    const r = await limiter.run(() => service.generate({ words, label: b.label, n: b.n, seed: b.seed }));
    return { labels: r.labels, seed: b.seed, images: r.images };
  });

  app.post('/api/retrieve', { schema: schemaOf('retrieve') }, async (req) => {
    const b = req.body as { words: unknown; k: number; distance?: Distance };
    const words = wordList(b.words) ?? [];
    if (!words.length) throw new HttpError(400, 'BAD_REQUEST', '`words` is empty');
    return limiter.run(() => service.retrieve(words, b.k, b.distance));
  });

  app.get('/api/images/:id', { schema: schemaOf('image') }, async (req, reply) => {
    const { id } = req.params as { id: string };
    const { scale } = req.query as { scale: number };
    return png(reply, service.imagePng(Number(id), scale), true);
  });

  app.get('/api/images/:id/reconstruction', { schema: schemaOf('reconstruction') }, async (req, reply) => {
    const { id } = req.params as { id: string };
    const { scale } = req.query as { scale: number };
    const buf = await limiter.run(() => service.reconstructionPng(Number(id), scale));
    return png(reply, buf, true);
  });

  app.get('/api/latent', { schema: schemaOf('latent') }, async (req, reply) => {
    const { method } = req.query as { method: Method };
    if (!LATENT_METHODS.includes(method)) throw new HttpError(400, 'BAD_REQUEST', `method must be one of ${LATENT_METHODS.join(', ')}`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new HttpError(503, 'LATENT_PENDING', `the ${method} map is still being computed; retry shortly`, {}, { 'retry-after': '5' })),
        limits.requestTimeoutMs,
      );
    });
    try {
      const map = await Promise.race([service.latent(method), timeout]);
      reply.header('cache-control', 'no-cache');
      return map;
    } finally {
      clearTimeout(timer);
    }
  });

  app.post('/api/interpolate', { schema: schemaOf('interpolate') }, async (req, reply) => {
    const b = req.body as { from: string | { id: number }; to: string | { id: number }; steps: number; scale: number };
    const end = (v: string | { id: number }) => (typeof v === 'string' ? v : v.id);
    const buf = await limiter.run(() => service.interpolate(end(b.from), end(b.to), b.steps, b.scale));
    return png(reply, buf);
  });

  // The explorer page: exact-name lookups in the in-memory asset table only.
  const sendAsset = (req: FastifyRequest, reply: FastifyReply, a: Asset | undefined) => {
    if (!a) return reply.code(404).send(errorBody(404, 'NOT_FOUND', 'no such file'));
    reply.header('etag', a.etag).header('cache-control', 'no-cache');
    if (req.headers['if-none-match'] === a.etag) return reply.code(304).send();
    if (a.type.startsWith('text/html')) {
      reply.header(
        'content-security-policy',
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
      );
    }
    return reply.type(a.type).send(a.body);
  };
  app.get('/', (req, reply) => sendAsset(req, reply, assets.get('index.html')));
  app.get('/index.html', (req, reply) => sendAsset(req, reply, assets.get('index.html')));
  app.get('/static/*', (req, reply) => {
    const name = (req.params as { '*': string })['*'];
    // Only flat names that are in the table; anything with a separator, dot-dot or NUL is not.
    const ok = /^[\w-][\w.-]*$/.test(name) && !name.includes('..');
    return sendAsset(req, reply, ok ? assets.get(name) : undefined);
  });

  return {
    app,
    service,
    limiter,
    limits,
    routes,
    async close() {
      closing = true;
      limiter.close();
      await app.close();
      await stopLatentWorkers();
    },
  };
}
