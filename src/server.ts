/** `probsem/server`: the HTTP API and web explorer (loads fastify; kept out of the main entry). */
export { createServer, type ServeOptions, type ProbsemServer } from './server/app.js';
export { DEFAULT_LIMITS, type ServeLimits } from './server/limits.js';
