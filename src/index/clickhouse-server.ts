/**
 * A throwaway ClickHouse server on loopback, for tests and benchmarks: a temporary folder with a
 * minimal config (HTTP port only, chosen free at random), started as a child process and stopped
 * by its pid. Works with Debian's clickhouse-server 18.16 (`clickhouse-server`) and with the
 * single-binary builds (`clickhouse server`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProbsemError } from '../core/errors.js';

export interface LocalClickHouse {
  readonly httpPort: number;
  readonly pid: number;
  readonly dir: string;
  /** clickhouse://127.0.0.1:<port>/<dbTable> */
  url(dbTable: string): string;
  /** Stops the server (SIGTERM, then SIGKILL after 10 s) and removes its folder. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * The command that starts a server, or null when no ClickHouse binary is installed.
 * PROBSEM_CLICKHOUSE_SERVER overrides the search: a command (e.g. "/opt/ch/clickhouse server"), or
 * "none" to act as if none were installed.
 */
export function findClickHouseServer(): string[] | null {
  const env = process.env.PROBSEM_CLICKHOUSE_SERVER;
  if (env !== undefined && env.trim() !== '') return env.trim() === 'none' ? null : env.trim().split(/\s+/);
  const which = (name: string): string | null => {
    const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
    for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/bin']) if (existsSync(join(dir, name))) return join(dir, name);
    return null;
  };
  const server = which('clickhouse-server');
  if (server) return [server];
  const single = which('clickhouse');
  return single ? [single, 'server'] : null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts a server and waits until its HTTP interface answers (at most `timeoutMs`, default 60 s). */
export async function startLocalClickHouse(opts: { timeoutMs?: number; command?: string[] } = {}): Promise<LocalClickHouse> {
  const command = opts.command ?? findClickHouseServer();
  if (!command) throw new ProbsemError('no ClickHouse server binary found (Debian: apt-get install clickhouse-server)', 'NOT_FOUND');
  const dir = mkdtempSync(join(tmpdir(), 'probsem-clickhouse-'));
  for (const sub of ['data', 'tmp', 'user_files', 'format_schemas']) mkdirSync(join(dir, sub));
  let child: ChildProcess | null = null;
  let exited = false;
  // If this process ends without calling stop (a crash), the server goes with it.
  const killOnExit = () => {
    try {
      if (child?.pid !== undefined && !exited) process.kill(child.pid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    } catch {
      /* gone */
    }
  };
  process.once('exit', killOnExit);
  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (child && !exited && child.pid !== undefined) {
      const done = new Promise<void>((r) => child!.once('exit', () => r()));
      try {
        process.kill(child.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      const timer = setTimeout(() => {
        try {
          if (!exited) process.kill(child!.pid!, 'SIGKILL');
        } catch {
          /* gone */
        }
      }, 10_000);
      await done;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const httpPort = await freePort();
    writeFileSync(
      join(dir, 'config.xml'),
      `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>${httpPort}</http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <user_files_path>${dir}/user_files/</user_files_path>
  <format_schema_path>${dir}/format_schemas/</format_schema_path>
  <mark_cache_size>268435456</mark_cache_size>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mlock_executable>false</mlock_executable>
</yandex>
`,
    );
    writeFileSync(
      join(dir, 'users.xml'),
      `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>8000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
`,
    );
    const log = openSync(join(dir, 'server.log'), 'w');
    child = spawn(command[0], [...command.slice(1), `--config-file=${join(dir, 'config.xml')}`], { cwd: dir, stdio: ['ignore', log, log] });
    closeSync(log);
    child.once('exit', () => (exited = true));
    child.once('error', () => (exited = true));
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
    for (;;) {
      if (exited) throw new ProbsemError(`clickhouse server exited during start-up: ${readFileSync(join(dir, 'server.log'), 'utf8').slice(-2000)}`, 'UNREACHABLE');
      try {
        const r = await fetch(`http://127.0.0.1:${httpPort}/ping`);
        if (r.ok) break;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) throw new ProbsemError(`clickhouse server did not answer on port ${httpPort} within ${opts.timeoutMs ?? 60_000} ms`, 'UNREACHABLE');
      await sleep(100);
    }
    const pid = child.pid!;
    return { httpPort, pid, dir, url: (dbTable) => `clickhouse://127.0.0.1:${httpPort}/${dbTable}`, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
