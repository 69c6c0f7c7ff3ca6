import { ProbsemError } from '../../core/errors.js';
import { DEFAULT_LIMITS } from '../../server/limits.js';
import { LOOPBACK_HOSTS, isLoopback } from '../../server/hosts.js';
import { intOption, parse, strOption } from '../args.js';
import type { Command } from './index.js';

const d = DEFAULT_LIMITS;

/** Bytes from '2097152', '512k', '2m' (binary units). */
function bytesOption(v: unknown, name: string, def: number, min = 1024): number {
  if (v === undefined) return def;
  const m = /^(\d+)\s*([kKmM]?)[bB]?$/.exec(String(v).trim());
  const n = m ? Number(m[1]) * (m[2].toLowerCase() === 'k' ? 1024 : m[2].toLowerCase() === 'm' ? 1024 * 1024 : 1) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > 1024 * 1024 * 1024) {
    throw new ProbsemError(`--${name} must be a size from ${min === 0 ? '0' : '1k'} to 1024m (e.g. 2m, 512k, 65536), got '${v}'`, 'BAD_OPTION');
  }
  return n;
}

export const serveCommand: Command = {
  summary: 'serve a trained run over HTTP: the JSON API and the explorer page',
  help: `probsem serve --run DIR [--port 8080] [--host 127.0.0.1] [limits]

  Serves the API of docs/api.md and the explorer page at http://HOST:PORT/.
  Listens on the loopback interface unless --host says otherwise; any other
  host needs a token (--token or PROBSEM_TOKEN), which every /api request then
  sends as "Authorization: Bearer TOKEN". SIGTERM or Ctrl-C stops it
  gracefully (running requests finish first).

  --dataset NAME|DIR   images to retrieve and map (default: the model's dataset)
  --data DIR           where to look for the dataset
  --port N             0 picks a free port (default 8080)
  --token TOKEN        require this bearer token (16+ characters) on /api calls
  --allow-host NAME    a further Host name to answer to (repeatable; default:
                       the loopback names and --host)
  --max-upload SIZE    largest request body, e.g. 2m, 512k (default ${d.maxUploadBytes / 1024 / 1024}m)
  --max-decode SIZE    largest decoded picture (pixels × channels × bytes per
                       sample, from its header; default ${d.maxDecodeBytes / 1024 / 1024}m)
  --max-n N            images per /api/generate (default ${d.maxN})
  --max-k N            results per /api/retrieve and /api/similar (default ${d.maxK})
  --max-steps N        frames per /api/interpolate (default ${d.maxSteps})
  --concurrency N      model jobs at once: worker threads (default: cores, ${d.maxConcurrent})
  --per-connection N   jobs one connection may have waiting or running (default ${d.maxPerConnection})
  --queue N            jobs waiting beyond those; more get 503 (default ${d.maxQueue})
  --timeout SECONDS    to receive a request, and to wait in the queue (default ${d.requestTimeoutMs / 1000})
  --latent-sample N    test images on the latent map (default ${d.latentSample})
  --page-data SIZE     the explorer page runs the model in the browser; it also
                       gets the test split (images and posteriors) when that
                       takes at most SIZE, and then annotates and searches it
                       there (default ${d.pageDataBytes / 1024 / 1024}m; 0: never). The page with
                       ?compute=server leaves every computation to the server.
  --log                log every request (JSON lines on stdout)`,
  async run(argv) {
    const { values: v } = parse(argv, {
      run: { type: 'string' },
      dataset: { type: 'string' },
      data: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      token: { type: 'string' },
      'allow-host': { type: 'string', multiple: true },
      'max-upload': { type: 'string' },
      'max-decode': { type: 'string' },
      'per-connection': { type: 'string' },
      'max-n': { type: 'string' },
      'max-k': { type: 'string' },
      'max-steps': { type: 'string' },
      concurrency: { type: 'string' },
      queue: { type: 'string' },
      timeout: { type: 'string' },
      'latent-sample': { type: 'string' },
      'page-data': { type: 'string' },
      log: { type: 'boolean' },
    });
    const runDir = strOption(v.run, 'run');
    const port = intOption(v.port, 'port', 8080, 0, 65535);
    const host = strOption(v.host, 'host', '127.0.0.1');
    const token = (v.token as string | undefined) ?? (process.env.PROBSEM_TOKEN || undefined);
    if (token !== undefined && (token.length < 16 || /\s/.test(token))) {
      throw new ProbsemError('--token must be at least 16 characters without spaces (e.g. the output of `openssl rand -hex 16`)', 'BAD_OPTION');
    }
    if (!isLoopback(host) && token === undefined) {
      throw new ProbsemError(`--host ${host} is not a loopback address: give --token or set PROBSEM_TOKEN, so only those who have it can use the model`, 'BAD_OPTION');
    }
    // Wildcard addresses answer to any name: there the token alone guards the server.
    const wildcard = host === '0.0.0.0' || host === '::' || host === '[::]';
    const allowedHosts = wildcard ? null : [...LOOPBACK_HOSTS, host.includes(':') && !host.startsWith('[') ? `[${host}]` : host, ...((v['allow-host'] as string[] | undefined) ?? [])];
    const limits = {
      maxUploadBytes: bytesOption(v['max-upload'], 'max-upload', d.maxUploadBytes),
      maxDecodeBytes: bytesOption(v['max-decode'], 'max-decode', d.maxDecodeBytes),
      maxPerConnection: intOption(v['per-connection'], 'per-connection', d.maxPerConnection, 1, 1000),
      maxN: intOption(v['max-n'], 'max-n', d.maxN, 1, 10000),
      maxK: intOption(v['max-k'], 'max-k', d.maxK, 1, 100000),
      maxSteps: intOption(v['max-steps'], 'max-steps', d.maxSteps, 2, 1000),
      maxConcurrent: intOption(v.concurrency, 'concurrency', d.maxConcurrent, 1, 64),
      maxQueue: intOption(v.queue, 'queue', d.maxQueue, 0, 100000),
      requestTimeoutMs: intOption(v.timeout, 'timeout', d.requestTimeoutMs / 1000, 1, 3600) * 1000,
      latentSample: intOption(v['latent-sample'], 'latent-sample', d.latentSample, 10, 100000),
      pageDataBytes: bytesOption(v['page-data'], 'page-data', d.pageDataBytes, 0),
    };
    // fastify loads only for this command.
    const { createServer } = await import('../../server/app.js');
    const server = await createServer({
      runDir,
      dataset: v.dataset as string | undefined,
      dataDir: v.data as string | undefined,
      limits,
      logger: Boolean(v.log),
      token,
      allowedHosts,
      onNotice: (m) => process.stderr.write(`probsem: ${m}\n`),
    });
    try {
      await server.app.listen({ port, host });
    } catch (e) {
      await server.close();
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'EADDRINUSE') throw new ProbsemError(`port ${port} on ${host} is already in use: choose another with --port`, 'BAD_OPTION');
      if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') throw new ProbsemError(`cannot listen on host '${host}'`, 'BAD_OPTION');
      throw e;
    }
    const addr = server.app.server.address();
    const actualPort = typeof addr === 'object' && addr ? addr.port : port;
    const shown = host.includes(':') ? `[${host}]` : host;
    const m = server.service.meta;
    process.stdout.write(`probsem serve: ${m.model} (latent ${server.service.model.latentDim}) from ${runDir}\n`);
    process.stdout.write(`probsem serve: listening on http://${shown}:${actualPort}/\n`);
    if (!isLoopback(host)) {
      process.stderr.write(
        `probsem: listening on ${host}, not only the loopback interface: /api calls need the token (Authorization: Bearer …); open the page as http://${shown}:${actualPort}/#token=TOKEN\n`,
      );
    }
    // Graceful shutdown: stop accepting, finish running requests, then exit.
    await new Promise<void>((resolve) => {
      let stopping = false;
      const stop = (sig: string) => {
        if (stopping) return;
        stopping = true;
        process.stdout.write(`probsem serve: ${sig} received, shutting down\n`);
        const force = setTimeout(() => {
          process.stderr.write('probsem: requests still running after 10 s; exiting anyway\n');
          process.exit(1);
        }, 10_000);
        force.unref();
        server
          .close()
          .catch((e) => process.stderr.write(`probsem: error while closing: ${(e as Error).message}\n`))
          .finally(() => {
            clearTimeout(force);
            resolve();
          });
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    process.stdout.write('probsem serve: stopped\n');
    return 0;
  },
};
