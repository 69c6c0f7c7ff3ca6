/**
 * JSON schemas of the API's requests and responses: fastify validates requests with them, and
 * `openapi.ts` builds docs/openapi.json from the same objects, so the two cannot drift.
 */
import { DISTANCES } from '../index/distances.js';
import type { ServeLimits } from './limits.js';

const errorRef = { $ref: '#/components/schemas/Error' };
const labelScores = {
  type: 'array',
  items: {
    type: 'object',
    required: ['label', 'probability', 'logLikelihood'],
    properties: { label: { type: 'string' }, probability: { type: 'number' }, logLikelihood: { type: 'number' } },
  },
};
/** Words: one string (split on commas) or a list of strings, each a label name or phrase. */
/** Ranked test images, as /api/retrieve and /api/similar answer them. */
const searchHits = {
  type: 'array',
  items: {
    type: 'object',
    properties: { id: { type: 'integer' }, label: { type: 'string' }, kl: { type: 'number' }, score: { type: 'number' }, url: { type: 'string' } },
  },
};

const words = {
  description:
    'a set query: its members as a list, or one string with commas between them; the words between two commas are one phrase ' +
    '("ankle boot"). Class names match case-insensitively; runs trained with --labels words take any word their vectors know, ' +
    'plurals and inflections read as their lemma',
  anyOf: [
    { type: 'array', minItems: 1, maxItems: 20, items: { type: 'string', minLength: 1, maxLength: 100 } },
    { type: 'string', minLength: 1, maxLength: 500 },
  ],
};
const endPoint = {
  description:
    'a class name or, on runs trained with --labels words, any word or phrase (the mean of its q(z|words)); or {"id": N}, a test image (its posterior mean)',
  anyOf: [
    { type: 'string', minLength: 1, maxLength: 100 },
    { type: 'object', required: ['id'], additionalProperties: false, properties: { id: { type: 'integer', minimum: 0 } } },
  ],
};
const scale = (def: number) => ({ type: 'integer', minimum: 1, maximum: 8, default: def, description: 'integer upscaling of each 28×28 image' });

export interface RouteDoc {
  method: 'GET' | 'POST';
  /** OpenAPI path ({id} style). */
  path: string;
  summary: string;
  description?: string;
  querystring?: Record<string, unknown>;
  params?: Record<string, unknown>;
  body?: Record<string, unknown>;
  /** Extra request body media types (beyond JSON), for the OpenAPI file. */
  uploads?: boolean;
  responses: Record<string, { description: string; json?: Record<string, unknown>; png?: boolean; binary?: boolean }>;
}

/** Every API route, with the limits filled in. */
export function routeDocs(l: ServeLimits): Record<string, RouteDoc> {
  const common = {
    '400': { description: 'invalid request, a non-finite number included (the message names the parameter)', json: errorRef },
    '429': { description: 'this connection already has its maximum of requests running or queued; see Retry-After', json: errorRef },
    '503': { description: 'busy (queue full), timed out in the queue (counted from when it was queued), or shutting down; see Retry-After', json: errorRef },
  };
  return {
    health: {
      method: 'GET',
      path: '/api/health',
      summary: 'liveness and queue state',
      responses: {
        '200': {
          description: 'the server is up',
          json: {
            type: 'object',
            properties: {
              status: { type: 'string', enum: ['ok', 'closing'] },
              uptimeSeconds: { type: 'number' },
              queue: {
                type: 'object',
                properties: { active: { type: 'integer' }, queued: { type: 'integer' }, maxActive: { type: 'integer' }, maxQueue: { type: 'integer' } },
              },
            },
          },
        },
      },
    },
    model: {
      method: 'GET',
      path: '/api/model',
      summary: "the model's name, config, classes, dataset, training provenance, metrics and the server's limits",
      responses: {
        '200': {
          description: 'model description',
          json: {
            type: 'object',
            properties: {
              model: { type: 'string' },
              config: { type: 'object', additionalProperties: true },
              classes: { type: 'array', items: { type: 'string' } },
              latentDim: { type: 'integer' },
              image: { type: 'object', properties: { height: { type: 'integer' }, width: { type: 'integer' } } },
              hasLabelEncoder: { type: 'boolean' },
              dataset: { type: 'object', additionalProperties: true },
              training: { type: ['object', 'null'], additionalProperties: true },
              metrics: { type: ['object', 'null'], additionalProperties: true },
              limits: { type: 'object', additionalProperties: { type: 'integer' } },
            },
          },
        },
      },
    },
    annotate: {
      method: 'POST',
      path: '/api/annotate',
      summary: 'labels of an image, ranked, with probabilities',
      description:
        `The image comes as the raw body (Content-Type image/png, image/jpeg, image/webp or image/gif), as a multipart/form-data file field, or as JSON: ` +
        `\`pixels\` (${28 * 28} grey values in [0, 1], row-major, light on dark), \`image\` (base64 picture, optionally a data URL) or \`id\` (a test image). ` +
        `Pictures (PNG, JPEG, WebP, GIF's first frame) are turned grey, fitted into the model's size with the aspect kept, and inverted when ` +
        `dark-on-light (a light border), as the training data are light-on-dark; \`input\` in the answer says what was converted. ` +
        `Probabilities are the softmax of log q(μ_x | l) over the labels. Uploads above ${l.maxUploadBytes} bytes get 413 (a multipart ` +
        `or chunked body as soon as it passes the limit); pictures whose header declares more than ${l.maxDecodeBytes} bytes of decoded pixels ` +
        `(width × height × channels × bytes per sample) get 413 DECODE_BUDGET before decoding; ` +
        `images above ${l.maxImagePixels} pixels or that do not decode get 400 with the reason; BMP/TIFF/AVIF/SVG and other formats get 415.`,
      querystring: {
        type: 'object',
        properties: {
          invert: { type: 'boolean', description: 'true: invert grey values; false: never; absent: invert dark-on-light pictures (pixels: never)' },
          top: { type: 'integer', minimum: 1, maximum: 1000, description: 'keep the best N labels' },
          reconstruct: { type: 'boolean', default: false, description: 'also return the reconstruction as a PNG data URL' },
        },
      },
      body: {
        type: 'object',
        properties: {
          pixels: { type: 'array', maxItems: 1_000_000, items: { type: 'number' } },
          image: { type: 'string', minLength: 1 },
          id: { type: 'integer', minimum: 0 },
          invert: { type: 'boolean' },
          top: { type: 'integer', minimum: 1, maximum: 1000 },
          reconstruct: { type: 'boolean' },
        },
      },
      uploads: true,
      responses: {
        '200': {
          description: 'labels, most probable first',
          json: {
            type: 'object',
            properties: {
              labels: labelScores,
              image: { type: 'object', properties: { id: { type: 'integer' }, label: { type: 'string' } } },
              reconstruction: { type: 'string', description: 'PNG data URL' },
              input: {
                type: 'object',
                description: 'for an uploaded picture: its format and size, the polarity detected, whether it was inverted, and a note on what was converted (null: nothing)',
                properties: {
                  format: { type: 'string' },
                  width: { type: 'integer' },
                  height: { type: 'integer' },
                  polarity: { type: 'string', enum: ['light-on-dark', 'dark-on-light'] },
                  inverted: { type: 'boolean' },
                  note: { type: ['string', 'null'] },
                },
              },
            },
          },
        },
        ...common,
        '404': { description: 'no test image with that id', json: errorRef },
        '413': { description: 'the upload is larger than the limit (PAYLOAD_TOO_LARGE), or its header declares more pixels × channels × bytes per sample than the decode budget (DECODE_BUDGET)', json: errorRef },
        '415': { description: 'an unsupported content type or image format', json: errorRef },
      },
    },
    generate: {
      method: 'POST',
      path: '/api/generate',
      summary: 'images generated for words or a label',
      description:
        'With `label`: z ~ q(z|label), as `probsem generate`. With `words`: z drawn from the words\' query Gaussian ' +
        '(one label: its q(z|l); several: the moment-matched Gaussian of their mixture). Same seed, same images.',
      body: {
        type: 'object',
        properties: {
          words,
          label: { type: 'string', minLength: 1, maxLength: 100 },
          n: { type: 'integer', minimum: 1, maximum: l.maxN, default: 8 },
          seed: { type: 'integer', minimum: 0, maximum: 2 ** 31 - 1, default: 0 },
        },
      },
      responses: {
        '200': {
          description: 'PNG data URLs',
          json: {
            type: 'object',
            properties: { labels: { type: 'array', items: { type: 'string' } }, seed: { type: 'integer' }, images: { type: 'array', items: { type: 'string' } } },
          },
        },
        ...common,
        '422': { description: 'the model has no label encoder', json: errorRef },
      },
    },
    retrieve: {
      method: 'POST',
      path: '/api/retrieve',
      summary: 'test images ranked by KL(query ‖ q(z|x)) for words',
      body: {
        type: 'object',
        required: ['words'],
        properties: {
          words,
          k: { type: 'integer', minimum: 1, maximum: l.maxK, default: 8 },
          distance: { type: 'string', enum: [...DISTANCES], default: 'kl', description: 'what to rank by (src/index/distances.ts); every one exact' },
        },
      },
      responses: {
        '200': {
          description: 'the k closest images, best first',
          json: {
            type: 'object',
            properties: {
              labels: { type: 'array', items: { type: 'string' } },
              distance: { type: 'string' },
              results: searchHits,
            },
          },
        },
        ...common,
        '422': { description: 'the model has no label encoder', json: errorRef },
      },
    },
    similar: {
      method: 'POST',
      path: '/api/similar',
      summary: 'test images ranked by KL(q(z|image) ‖ q(z|x)) to a test image',
      description:
        'The image `id` of the test split is the query (its own posterior, full covariance where the model has one) and is left out of the results; ' +
        '`dissimilar` ranks the largest values first. Searched exactly in the run\'s index of the test split, as `/api/retrieve`.',
      body: {
        type: 'object',
        required: ['id'],
        properties: {
          id: { type: 'integer', minimum: 0 },
          k: { type: 'integer', minimum: 1, maximum: l.maxK, default: 8 },
          distance: { type: 'string', enum: [...DISTANCES], default: 'kl', description: 'what to rank by (src/index/distances.ts); every one exact' },
          dissimilar: { type: 'boolean', default: false },
        },
      },
      responses: {
        '200': {
          description: 'the k closest (or, dissimilar, farthest) other test images, best first',
          json: {
            type: 'object',
            properties: {
              image: { type: 'object', properties: { id: { type: 'integer' }, label: { type: 'string' } } },
              distance: { type: 'string' },
              dissimilar: { type: 'boolean' },
              results: searchHits,
            },
          },
        },
        ...common,
        '404': { description: 'no test image with that id', json: errorRef },
      },
    },
    site: {
      method: 'GET',
      path: '/api/site',
      summary: "what the explorer page needs to run the model in the browser: the site manifest of `probsem export-web`'s format",
      description:
        `The model file, its weights, the word list of word-vector runs and — when the test split's images and posteriors take at most ${l.pageDataBytes} bytes — ` +
        'the whole split (`sample`; null when larger, and the page asks the server for test images and searches). `maps` is empty: the page asks /api/latent.',
      responses: { '200': { description: 'the site manifest (docs/explorer.md)', json: { type: 'object', additionalProperties: true } } },
    },
    siteFile: {
      method: 'GET',
      path: '/api/site/{file}',
      summary: 'a file the site manifest names: model.json, the weights, images.bin, posteriors.bin, words.bin',
      params: { type: 'object', properties: { file: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$' } }, required: ['file'] },
      responses: {
        '200': { description: 'the file (with an ETag; If-None-Match answers 304)', binary: true },
        '400': common['400'],
        '404': { description: 'no such file in the site', json: errorRef },
      },
    },
    image: {
      method: 'GET',
      path: '/api/images/{id}',
      summary: 'a test image as PNG',
      params: { type: 'object', properties: { id: { type: 'string', pattern: '^[0-9]{1,9}$' } }, required: ['id'] },
      querystring: { type: 'object', properties: { scale: scale(1) } },
      responses: { '200': { description: 'the image', png: true }, '400': common['400'], '404': { description: 'no such image', json: errorRef } },
    },
    reconstruction: {
      method: 'GET',
      path: '/api/images/{id}/reconstruction',
      summary: "a test image's posterior-mean reconstruction as PNG",
      params: { type: 'object', properties: { id: { type: 'string', pattern: '^[0-9]{1,9}$' } }, required: ['id'] },
      querystring: { type: 'object', properties: { scale: scale(1) } },
      responses: { '200': { description: 'the reconstruction', png: true }, ...common, '404': { description: 'no such image', json: errorRef } },
    },
    latent: {
      method: 'GET',
      path: '/api/latent',
      summary: '2-D map of test-image posterior means, with labels',
      description:
        `PCA, t-SNE (Barnes–Hut) or UMAP (umap-js) of the posterior means of ${l.latentSample} sampled test images; ` +
        'computed once per method in a worker thread and cached. While a map is still being computed after the request timeout: 503 with Retry-After.',
      querystring: {
        type: 'object',
        properties: { method: { type: 'string', enum: ['pca', 'tsne', 'umap'], default: 'pca' } },
      },
      responses: {
        '200': {
          description: 'columns of points',
          json: {
            type: 'object',
            properties: {
              method: { type: 'string' },
              ids: { type: 'array', items: { type: 'integer' } },
              x: { type: 'array', items: { type: 'number' } },
              y: { type: 'array', items: { type: 'number' } },
              labels: { type: 'array', items: { type: 'integer' } },
              classes: { type: 'array', items: { type: 'string' } },
              seconds: { type: 'number' },
            },
          },
        },
        ...common,
      },
    },
    interpolate: {
      method: 'POST',
      path: '/api/interpolate',
      summary: 'a PNG strip of images decoded along the straight line between two latent points (words or test images)',
      body: {
        type: 'object',
        required: ['from', 'to'],
        properties: {
          from: endPoint,
          to: endPoint,
          steps: { type: 'integer', minimum: 2, maximum: l.maxSteps, default: 8 },
          scale: scale(2),
        },
      },
      responses: { '200': { description: 'steps images side by side, no padding', png: true }, ...common, '404': { description: 'no such image', json: errorRef } },
    },
  };
}

/** The error body every failure has. */
export const ERROR_SCHEMA = {
  type: 'object',
  required: ['statusCode', 'error', 'code', 'message'],
  properties: {
    statusCode: { type: 'integer' },
    error: { type: 'string', description: 'HTTP status text' },
    code: {
      type: 'string',
      description:
        'stable tag: BAD_REQUEST, UNKNOWN_WORD, BAD_IMAGE, BAD_PIXELS, PAYLOAD_TOO_LARGE, DECODE_BUDGET, UNSUPPORTED_IMAGE, NOT_FOUND, ' +
        'UNAUTHORIZED, FORBIDDEN_HOST, FORBIDDEN_ORIGIN, CONNECTION_BUSY, BUSY, QUEUE_TIMEOUT, …',
    },
    message: { type: 'string' },
    words: { type: 'array', items: { type: 'string' }, description: 'UNKNOWN_WORD: the words that name no label' },
  },
};

/**
 * The first value where `schema` wants a number but `value` is, or would be coerced to, a
 * non-finite one ("Infinity", "-1e400", a JSON 1e400), as "name: value"; null when there is none.
 * fastify's AJV coerces such strings to ±Infinity and then lets them through integer, minimum and
 * maximum, so this runs before validation on every route's querystring and body.
 */
export function findNonFinite(schema: unknown, value: unknown, name = ''): { name: string; value: unknown } | null {
  if (!schema || typeof schema !== 'object' || value === undefined || value === null) return null;
  const s = schema as { type?: unknown; properties?: Record<string, unknown>; items?: unknown; anyOf?: unknown[] };
  const types = [s.type].flat();
  if ((types.includes('number') || types.includes('integer')) && (typeof value === 'number' || typeof value === 'string')) {
    // A string counts when it reads as a number: "abc" is left to the schema's own message.
    const n = Number(value);
    const numeric = typeof value === 'number' || (value.trim() !== '' && !Number.isNaN(n)) || /^[+-]?(Infinity|NaN)$/i.test(value.trim());
    if (numeric && !Number.isFinite(n)) return { name: name || 'the value', value };
  }
  if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) {
      const hit = s.items ? findNonFinite(s.items, v, `${name}[${i}]`) : null;
      if (hit) return hit;
    }
  } else if (typeof value === 'object' && s.properties) {
    for (const [k, sub] of Object.entries(s.properties)) {
      const hit = findNonFinite(sub, (value as Record<string, unknown>)[k], name ? `${name}.${k}` : k);
      if (hit) return hit;
    }
  }
  for (const alt of s.anyOf ?? []) {
    const hit = findNonFinite(alt, value, name);
    if (hit) return hit;
  }
  return null;
}
