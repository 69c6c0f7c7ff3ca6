/**
 * `probsem serve`: a fastify server over one trained run — the JSON API of docs/api.md and the
 * explorer page (web/). Thin: the event loop parses, validates and queues; every model
 * computation (and image decoding) runs in a pool of worker threads (./pool.ts), behind a
 * bounded queue with global and per-connection caps.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import { homedir, tmpdir } from 'node:os';
import { resolve } from 'node:path';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { ProbsemError } from '../core/errors.js';
import type { Distance } from '../index/distances.js';
import { currentBackend } from '../core/backend.js';
import { checkImageHeader } from '../data/image-decode.js';
import { UnknownWordError } from '../runs/retrieval.js';
import { DEFAULT_LIMITS, HttpError, Limiter, type ServeLimits } from './limits.js';
import { LATENT_METHODS, type Method, stopLatentWorkers } from './latent.js';
import { buildOpenApi } from './openapi.js';
import { LOOPBACK_HOSTS } from './hosts.js';
import { findNonFinite, routeDocs } from './schemas.js';
import { ModelService, imageHttpError, withoutPaths } from './service.js';
import { type JobOp, WorkerPool } from './pool.js';
import type { ApiError, HealthResponse, LimitsInfo } from './types.js';
import { type ServedSite, servedSite } from './site.js';
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
  /** When set, every /api request must carry `Authorization: Bearer <token>`. */
  token?: string;
  /**
   * Host names (the Host header without its port) the server answers to; others get 403, which
   * stops DNS-rebinding pages. Default: the loopback names. null: any (a server listening on all
   * interfaces, where the token is the protection).
   */
  allowedHosts?: string[] | null;
  onNotice?: (msg: string) => void;
}

export interface ProbsemServer {
  app: FastifyInstance;
  service: ModelService;
  /** The model workers (one per concurrent job). */
  pool: WorkerPool;
  limiter: Limiter;
  limits: ServeLimits;
  /** "METHOD /path" of every route, as registered. */
  routes: string[];
  /** Stops accepting requests, lets running ones finish, then stops the model and map workers. */
  close(): Promise<void>;
}

const STATUS_TEXT = http.STATUS_CODES;

function errorBody(statusCode: number, code: string, message: string, extra: Record<string, unknown> = {}): ApiError {
  return { statusCode, error: STATUS_TEXT[statusCode] ?? 'Error', code, message, ...extra };
}

/**
 * Cuts paths under the given folders (the run's, the data's, the working and temporary folders,
 * home) to their last component: library messages may name files, and a client is told names,
 * never where they live on the server.
 */
function pathScrubber(roots: string[]): (text: string) => string {
  const escaped = [...new Set(roots.filter((r) => r.length > 1).map((r) => resolve(r)))]
    .sort((a, b) => b.length - a.length)
    .map((r) => r.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  if (!escaped.length) return (t) => t;
  const re = new RegExp(`(?:${escaped.join('|')})(?:[\\\\/][^\\s'"\`,;:]*)?`, 'g');
  return (t) => t.replace(re, (p) => p.split(/[\\/]/).filter(Boolean).pop() ?? '');
}

/** The host name of a Host header or an Origin, lower-cased, brackets kept for IPv6; null when unparsable. */
function hostName(v: string, withScheme: boolean): string | null {
  try {
    return new URL(withScheme ? v : `http://${v}`).hostname.toLowerCase();
  } catch {
    return null;
  }
}

/** The cookie the explorer page keeps the token in (set from the page's #token= address). */
export const TOKEN_COOKIE = 'probsem_token';

/**
 * Whether a request carries the token: `Authorization: Bearer …`, or the page's same-site cookie
 * (an <img> cannot send a header). Compared in constant time (both sides hashed to equal lengths).
 */
function tokenMatches(headers: http.IncomingHttpHeaders, expected: Buffer): boolean {
  const same = (v: string | undefined) => v !== undefined && timingSafeEqual(createHash('sha256').update(v).digest(), expected);
  const bearer = /^Bearer +(\S+)$/i.exec(headers.authorization ?? '')?.[1];
  const cookie = new RegExp(`(?:^|;\\s*)${TOKEN_COOKIE}=([^;]*)`).exec(headers.cookie ?? '')?.[1];
  let fromCookie: string | undefined;
  try {
    fromCookie = cookie === undefined ? undefined : decodeURIComponent(cookie);
  } catch {
    fromCookie = undefined;
  }
  return same(bearer) || same(fromCookie);
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
    maxDecodeBytes: l.maxDecodeBytes,
    maxN: l.maxN,
    maxK: l.maxK,
    maxSteps: l.maxSteps,
    maxConcurrent: l.maxConcurrent,
    maxPerConnection: l.maxPerConnection,
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

/**
 * A multipart file part, refused with 413 the moment it passes the limit (busboy's 'limit' event).
 * The plugin's toBuffer reads a truncated part to its end, so a 60 MiB upload was read whole
 * before its 413; here the error handler answers at once and closes the connection.
 */
function readPart(file: NodeJS.ReadableStream, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    file.on('data', (c: Buffer) => chunks.push(c));
    file.once('limit', () => {
      file.removeAllListeners('data');
      file.resume();
      reject(new HttpError(413, 'PAYLOAD_TOO_LARGE', `the upload is larger than the limit of ${max} bytes`));
    });
    file.once('end', () => resolve(Buffer.concat(chunks)));
    file.once('error', reject);
  });
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
  // Load or build (and save) the test split's index now: the first search and latent map do not pay
  // for it, and the pool's workers then read it from the run's index cache.
  void service.index;
  const assets = await loadWebAssets(o.webDir);
  const pool = await WorkerPool.start(limits.maxConcurrent, {
    runDir: o.runDir,
    dataset: o.dataset,
    dataDir: o.dataDir,
    backend: currentBackend(),
    maxDecodeBytes: limits.maxDecodeBytes,
  });
  const limiter = new Limiter(limits.maxConcurrent, limits.maxQueue, limits.requestTimeoutMs, limits.maxPerConnection);
  const tokenHash = o.token ? createHash('sha256').update(o.token).digest() : null;
  const allowedHosts = o.allowedHosts === undefined ? LOOPBACK_HOSTS : o.allowedHosts?.map((h) => hostName(h, false) ?? h.toLowerCase()) ?? null;
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
    // DNS rebinding: a foreign page that resolved its own name to this address sends its Host.
    const host = req.headers.host;
    if (allowedHosts && !(host && allowedHosts.includes(hostName(host, false) ?? ''))) {
      throw new HttpError(403, 'FORBIDDEN_HOST', `this server does not answer to the host '${host ?? ''}' (it answers to ${allowedHosts.join(', ')})`);
    }
    // Cross-site requests that change state (a form or fetch from another origin) are refused.
    if (req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS') {
      const origin = req.headers.origin;
      if (origin !== undefined && hostName(origin, true) !== null ? new URL(origin).host !== host : origin !== undefined) {
        throw new HttpError(403, 'FORBIDDEN_ORIGIN', `requests from the origin '${origin}' are not accepted: only pages served by this server may send them`);
      }
      if (req.headers['sec-fetch-site'] === 'cross-site') throw new HttpError(403, 'FORBIDDEN_ORIGIN', 'cross-site requests are not accepted');
    }
    if (tokenHash && req.url.startsWith('/api/') && !tokenMatches(req.headers, tokenHash)) {
      throw new HttpError(401, 'UNAUTHORIZED', 'this server needs a token: send the header Authorization: Bearer <token> (the page: open it as /#token=<token>)', {}, { 'www-authenticate': 'Bearer' });
    }
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

  // Strict numbers: "Infinity", "-1e400" or a JSON 1e400 where a number is expected is a 400
  // naming the parameter (fastify's AJV would coerce them to ±Infinity and let them through).
  app.addHook('preValidation', async (req) => {
    const schema = req.routeOptions.schema as { querystring?: unknown; body?: unknown } | undefined;
    if (!schema) return;
    const hit = findNonFinite(schema.querystring, req.query) ?? (Buffer.isBuffer(req.body) ? null : findNonFinite(schema.body, req.body));
    if (hit) throw new HttpError(400, 'BAD_REQUEST', `${hit.name} must be a finite number, got ${JSON.stringify(hit.value)}`);
  });

  const scrub = pathScrubber([o.runDir, o.dataDir ?? '', o.dataset ?? '', process.cwd(), tmpdir(), homedir()]);
  app.setErrorHandler((err, req, reply) => {
    const { status, body, headers } = toHttp(err, limits.maxUploadBytes);
    body.message = scrub(body.message);
    if (status >= 500 && body.code === 'INTERNAL') req.log.error(err);
    // A refusal sent before the body was read closes the connection, so the rest is not read
    // (node would otherwise read and discard it to keep the connection alive).
    if (!req.raw.complete) reply.header('connection', 'close');
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

  /**
   * A model job: queued behind the caps, run in a worker. Its signal aborts when the client
   * disconnects, so the job is dropped if it has not started yet.
   */
  const job = <T>(req: FastifyRequest, reply: FastifyReply, op: JobOp, ...args: unknown[]): Promise<T> => {
    const ac = new AbortController();
    const res = reply.raw;
    if (res.destroyed || req.raw.socket?.destroyed) ac.abort();
    else res.once('close', () => !res.writableFinished && ac.abort());
    return limiter.run(() => pool.run(op, ...args) as Promise<T>, { signal: ac.signal, owner: req.raw.socket });
  };
  const asBuffer = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
  app.get('/api/openapi.json', async () => openapi);

  app.post('/api/annotate', {
    schema: schemaOf('annotate'),
    // A multipart body is read in the handler (as a stream); give the JSON schema an empty object.
    preValidation: async (req) => {
      if (req.isMultipart()) req.body = {};
    },
  }, async (req: FastifyRequest, reply: FastifyReply) => {
    const q = req.query as { invert?: boolean; top?: number; reconstruct?: boolean };
    // invert absent: decided per picture (dark-on-light ones are inverted).
    let opts = { invert: q.invert, top: q.top, reconstruct: Boolean(q.reconstruct) };
    let upload: Buffer | null = null;
    let pixels: unknown[] | null = null;
    let id: number | null = null;
    if (req.isMultipart()) {
      const file = await req.file();
      if (!file) throw new HttpError(400, 'BAD_REQUEST', 'the multipart body has no file part');
      upload = await readPart(file.file, limits.maxUploadBytes);
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
    // Everything that can be judged without decoding is judged here, before queueing.
    if (id !== null) return job(req, reply, 'annotateId', service.checkId(id), opts);
    if (upload) {
      try {
        checkImageHeader(upload, { maxPixels: limits.maxImagePixels, maxDecodeBytes: limits.maxDecodeBytes, source: 'the upload' });
      } catch (e) {
        throw imageHttpError(e);
      }
      return job(req, reply, 'annotateUpload', upload, { ...opts, maxPixels: limits.maxImagePixels });
    }
    let grey = service.checkPixels(pixels!);
    if (opts.invert) grey = grey.map((v) => 1 - v);
    return job(req, reply, 'annotatePixels', grey, opts);
  });

  app.post('/api/generate', { schema: schemaOf('generate') }, async (req, reply) => {
    const b = req.body as { words?: unknown; label?: string; n: number; seed: number };
    if ((b.words === undefined) === (b.label === undefined)) throw new HttpError(400, 'BAD_REQUEST', 'give exactly one of `words` and `label`');
    const words = wordList(b.words);
    const r = await job<{ labels: string[]; images: string[] }>(req, reply, 'generate', { words, label: b.label, n: b.n, seed: b.seed });
    return { labels: r.labels, seed: b.seed, images: r.images };
  });

  app.post('/api/retrieve', { schema: schemaOf('retrieve') }, async (req, reply) => {
    const b = req.body as { words: unknown; k: number; distance?: Distance };
    const words = wordList(b.words) ?? [];
    if (!words.length) throw new HttpError(400, 'BAD_REQUEST', '`words` is empty');
    return job(req, reply, 'retrieve', words, b.k, b.distance);
  });

  app.post('/api/similar', { schema: schemaOf('similar') }, async (req, reply) => {
    const b = req.body as { id: number; k: number; distance?: Distance; dissimilar?: boolean };
    return job(req, reply, 'similar', service.checkId(b.id), b.k, b.distance, Boolean(b.dissimilar));
  });

  app.get('/api/images/:id', { schema: schemaOf('image') }, async (req, reply) => {
    const { id } = req.params as { id: string };
    const { scale } = req.query as { scale: number };
    return png(reply, service.imagePng(Number(id), scale), true);
  });

  app.get('/api/images/:id/reconstruction', { schema: schemaOf('reconstruction') }, async (req, reply) => {
    const { id } = req.params as { id: string };
    const { scale } = req.query as { scale: number };
    const buf = await job<Uint8Array>(req, reply, 'reconstructionPng', service.checkId(Number(id)), scale);
    return png(reply, asBuffer(buf), true);
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

  // What the page needs to compute in the tab (site.ts): built on first request, then held.
  let site: ServedSite | null = null;
  const siteData = () => (site ??= servedSite(service, { maxDataBytes: limits.pageDataBytes }));
  app.get('/api/site', { schema: schemaOf('site') }, async (req, reply) => {
    reply.header('cache-control', 'no-cache');
    return siteData().manifest;
  });
  app.get('/api/site/:file', { schema: schemaOf('siteFile') }, (req, reply) => sendAsset(req, reply, siteData().files.get((req.params as { file: string }).file)));

  app.post('/api/interpolate', { schema: schemaOf('interpolate') }, async (req, reply) => {
    const b = req.body as { from: string | { id: number }; to: string | { id: number }; steps: number; scale: number };
    const end = (v: string | { id: number }) => (typeof v === 'string' ? v : v.id);
    const buf = await job<Uint8Array>(req, reply, 'interpolate', end(b.from), end(b.to), b.steps, b.scale);
    return png(reply, asBuffer(buf));
  });

  // The explorer page: exact-name lookups in the in-memory asset table only.
  const sendAsset = (req: FastifyRequest, reply: FastifyReply, a: Asset | undefined) => {
    if (!a) return reply.code(404).send(errorBody(404, 'NOT_FOUND', 'no such file'));
    reply.header('etag', a.etag).header('cache-control', 'no-cache');
    if (req.headers['if-none-match'] === a.etag) return reply.code(304).send();
    if (a.type.startsWith('text/html')) {
      reply.header(
        'content-security-policy',
        // 'wasm-unsafe-eval': the page compiles TensorFlow.js's WebAssembly (it allows no eval of scripts).
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
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
    pool,
    limiter,
    limits,
    routes,
    async close() {
      closing = true;
      limiter.close();
      try {
        await app.close();
      } finally {
        await pool.close();
        await stopLatentWorkers();
      }
    },
  };
}
