/**
 * The OpenAPI 3.1 description of the API, built from the same schemas fastify validates with
 * (`schemas.ts`). docs/openapi.json is this with the default limits:
 *   npx tsx src/server/openapi.ts > docs/openapi.json
 * (a test checks the file is current). The server also serves it at /api/openapi.json.
 */
import { pathToFileURL } from 'node:url';
import { DEFAULT_LIMITS, type ServeLimits } from './limits.js';
import { ERROR_SCHEMA, type RouteDoc, routeDocs } from './schemas.js';

export function buildOpenApi(limits: ServeLimits = DEFAULT_LIMITS): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const errorRef = { $ref: '#/components/schemas/Error' };
  for (const d of Object.values(routeDocs(limits))) {
    const parameters: unknown[] = [];
    for (const [where, schema] of [
      ['path', d.params],
      ['query', d.querystring],
    ] as const) {
      const props = (schema?.properties ?? {}) as Record<string, Record<string, unknown>>;
      const required = (schema?.required ?? []) as string[];
      for (const [name, s] of Object.entries(props)) {
        const { description, ...rest } = s;
        parameters.push({ name, in: where, required: where === 'path' || required.includes(name), ...(description ? { description } : {}), schema: rest });
      }
    }
    const op: Record<string, unknown> = { summary: d.summary };
    if (d.description) op.description = d.description;
    if (parameters.length) op.parameters = parameters;
    if (d.body) {
      const content: Record<string, unknown> = { 'application/json': { schema: d.body } };
      if (d.uploads) {
        const bin = { schema: { type: 'string', format: 'binary' } };
        for (const type of ['image/png', 'image/jpeg', 'image/webp', 'image/gif']) content[type] = bin;
        content['multipart/form-data'] = {
          schema: {
            type: 'object',
            required: ['image'],
            properties: {
              image: { type: 'string', format: 'binary', description: 'the image file (any field name; the first file counts)' },
              invert: { type: 'string', enum: ['true', 'false'] },
              reconstruct: { type: 'string', enum: ['true', 'false'] },
            },
          },
        };
      }
      op.requestBody = { required: !d.uploads, content };
    }
    // Every API route: a token when the server has one; foreign Host or Origin headers refused.
    const guarded: RouteDoc['responses'] = {
      ...d.responses,
      '401': { description: 'the server needs a token and none (or a wrong one) was sent: Authorization: Bearer <token>', json: errorRef },
      '403': { description: 'a Host the server does not answer to (FORBIDDEN_HOST), or a state-changing request from a foreign Origin (FORBIDDEN_ORIGIN)', json: errorRef },
    };
    op.responses = Object.fromEntries(
      Object.entries(guarded).map(([code, r]) => [
        code,
        {
          description: r.description,
          ...(r.json ? { content: { 'application/json': { schema: r.json } } } : {}),
          ...(r.png ? { content: { 'image/png': { schema: { type: 'string', format: 'binary' } } } } : {}),
          ...(r.binary ? { content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } } : {}),
        },
      ]),
    );
    (paths[d.path] ??= {})[d.method.toLowerCase()] = op;
  }
  paths['/api/openapi.json'] = { get: { summary: 'this document', responses: { '200': { description: 'OpenAPI 3.1 JSON' } } } };
  return {
    openapi: '3.1.0',
    info: {
      title: 'probsem serve',
      version: '1',
      description:
        'HTTP API over one trained probsem run: annotate images, generate and retrieve images for words, latent maps, interpolation. ' +
        'Limits shown are the defaults (`probsem serve --help`). Errors are JSON with statusCode, error, code and message. ' +
        'A server listening off the loopback interface needs a bearer token (serve --token or PROBSEM_TOKEN) on every /api call.',
    },
    servers: [{ url: 'http://127.0.0.1:8080' }],
    paths,
    security: [{}, { bearer: [] }],
    components: { schemas: { Error: ERROR_SCHEMA }, securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(JSON.stringify(buildOpenApi(), null, 2) + '\n');
}
